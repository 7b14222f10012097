"""A record's strings, each with where it stands: the JSON path a reason may name.

A refusal says *where* in a record a check fired (``$.features.lang``,
``$.items[3].text``, ``$`` for a bare string), never *what* it found there. Paths are
made of keys and indices; a key is shown only when it is a plain identifier (letters,
digits, ``_``, ``-``, at most 64 characters) and not itself withheld (a key that holds
PII): any other key is shown as ``*``, so a path never carries free text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from typing import Any, NamedTuple

import orjson

from kairo_guard.core.content import RawJSON, canonical_json, content_text, json_form, json_root
from kairo_guard.core.exceptions import ContentError
from kairo_guard.core.types import SEAL_FIELD

ROOT = "$"
WITHHELD_KEY = "*"
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")

Path = tuple[str | int, ...]
"""Keys (str) and list indices (int) from the record's root."""


class Field(NamedTuple):
    """One string of a record: its path, its text, and whether it is a key."""

    path: Path
    text: str
    is_key: bool
    """The text is the last key of ``path`` itself, not the value under it."""


def record_fields(content: object) -> list[Field]:
    """Return the record's strings with their paths, in the order of
    :func:`record_strings`.

    Raises:
        ContentError: as :func:`record_strings`.
    """
    try:
        return [Field(_path(node), text, is_key) for node, text, is_key in _walk(content)]
    except TypeError as exc:  # keys that cannot be sorted together
        raise ContentError(_UNREADABLE + str(exc)) from exc


def record_strings(content: object) -> list[str]:
    """Return the record's strings in a stable order: each key before its value, keys
    in sorted order, list items in order; the seal field of a record given as a mapping
    is skipped, numbers and booleans are not text; bytes given as the whole content are
    read as the JSON value they hold (:func:`bytes_value`), else as UTF-8 with
    replacement.

    The content is what :func:`kairo_guard.core.content.content_digest` digests, mapped
    the same way (:func:`~kairo_guard.core.content.json_form`: a dataclass is the object
    of all its fields, an Enum member its value), so the text covers the digest.

    The same strings in the same order as :func:`record_fields`, without paths: this
    runs on every record the fingerprint net reads, so it keeps no path state (a test
    holds the two walks to one order).

    Raises:
        ContentError: for content outside the definition (a set, bytes inside a record,
            a key that is not a string, another object, JSON bytes nested past what a
            parser reads): what cannot be read is refused, never passed over.
    """
    try:
        if type(content) is dict and (flat := _flat_strings(content)) is not None:
            return flat
        return list(_texts(content))
    except TypeError as exc:  # keys that cannot be sorted together
        raise ContentError(_UNREADABLE + str(exc)) from exc


def _flat_strings(record: dict[Any, Any]) -> list[str] | None:
    """:func:`record_strings` of a record whose keys are strings and whose values are
    strings, numbers, booleans or null (most records), in one loop; None for any other,
    which the walk reads."""
    strings: list[str] = []
    for key in sorted(record):
        if type(key) is not str:
            return None
        if key == SEAL_FIELD:
            continue
        value = record[key]
        kind = type(value)
        if kind is str:
            strings += (key, value)
        elif kind in _NOT_TEXT:
            strings.append(key)
        else:
            return None
    return strings


def require_readable(content: object) -> None:
    """Raise :class:`ContentError` unless the reader reads ``content`` in full: bytes
    given as the whole content must be UTF-8 text (read with replacement characters,
    compressed or otherwise encoded text would pass the net and the PII gate unread).
    What the reader cannot read must not be vouched for.

    Raises:
        ContentError: for bytes that are not UTF-8 text.
    """
    if isinstance(content, bytes | bytearray | memoryview) and not isinstance(content, RawJSON):
        try:
            str(content.tobytes() if isinstance(content, memoryview) else content, "utf-8")
        except UnicodeDecodeError as exc:
            raise ContentError(
                f"{_UNREADABLE}bytes that are not UTF-8 text (at byte {exc.start})"
            ) from exc


_UNREADABLE = "content the text reader cannot read: "
_NOT_TEXT = frozenset({int, float, bool, type(None)})


def _root(content: object) -> object:
    if type(content) is dict:
        return content
    if isinstance(content, RawJSON):  # before bytes: it is a bytes subclass
        return _canonical_value(content)
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes_value(content)
    return json_root(content)


_OPENS_JSON = re.compile(rb'(?:\xef\xbb\xbf)?[ \t\r\n]*+[\[{"]')
_OPENERS = ("{", "[", '"')  # a line of a number is read as its text: it may be a card's
_NOT_JSON = object()


def bytes_value(content: bytes | bytearray | memoryview) -> object:
    """Return what bytes given as the whole content hold: the JSON value of JSON text
    (one value; or JSON lines: the list of the objects, arrays and strings they hold, any
    other line as its text), with its strings decoded as the code that parses them
    reads them; any other bytes as UTF-8 text with replacement.

    The digest covers the bytes as they are, and canonical JSON bytes digest as the
    record they encode: read raw, their escapes (``\\n``, ``\\u00e9``) would hide the
    record's text from the net. All the bytes digest is read: a root seal field, and
    every value of a repeated key (as a list under the key).

    Raises:
        ContentError: for JSON text nested deeper than a parser reads.
    """
    data = content.tobytes() if isinstance(content, memoryview) else content
    if _OPENS_JSON.match(data) is None:  # most bytes are not JSON: one match says so
        return content_text(data)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        if _canonical(value, data):  # a record's bytes: the common case, parsed once
            return value
    try:
        text = str(data, "utf-8")
    except UnicodeDecodeError:
        return content_text(data)  # not text: refused by require_readable
    value = _parsed(text.removeprefix("\ufeff"))
    if value is _NOT_JSON:
        value = _json_lines(text)
    return content_text(data) if value is _NOT_JSON else value


def _canonical(value: object, data: bytes | bytearray) -> bool:
    try:
        return canonical_json(value) == data
    except ContentError:
        return False


def _parsed(text: str) -> object:
    """The value of JSON text as Python's reader takes it (NaN, big integers, control
    characters in strings): more than orjson reads, so less is read raw."""
    try:
        return json.loads(text, object_pairs_hook=_members, strict=False)
    except RecursionError as exc:
        raise ContentError(f"{_UNREADABLE}JSON text nested deeper than it reads") from exc
    except ContentError:
        raise
    except ValueError:
        return _NOT_JSON


def _members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) == len(pairs):
        return members
    # A parser keeps one value of a repeated key, but the digest covers them all: the
    # reader reads them all, as a list under the key.
    repeated: dict[str, list[Any]] = {}
    for key, value in pairs:
        repeated.setdefault(key, []).append(value)
    return {key: values[0] if len(values) == 1 else values for key, values in repeated.items()}


def _json_lines(text: str) -> object:
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 2:
        return _NOT_JSON
    values = [_parsed(line) if line.lstrip()[:1] in _OPENERS else _NOT_JSON for line in lines]
    if all(value is _NOT_JSON for value in values):
        return _NOT_JSON
    return [
        line if value is _NOT_JSON else value for line, value in zip(lines, values, strict=True)
    ]


def _canonical_value(raw: RawJSON) -> object:
    # The digest covers the bytes; a parser reads one value per repeated key and the
    # reader skips a root seal field: only canonical text is read as all it digests.
    try:
        value = raw.value()
    except orjson.JSONDecodeError as exc:
        raise ContentError(f"{_UNREADABLE}JSON text that does not parse ({exc})") from exc
    if canonical_json(value) != raw:
        raise ContentError(
            f"{_UNREADABLE}JSON text that is not canonical (a repeated key, a seal field, "
            "other spacing or order): a parser would not read all the bytes digested"
        )
    return value


def _sorted_keys(item: dict[Any, Any], root: bool) -> list[str]:
    keys = sorted(item, reverse=True)
    for key in keys:
        if type(key) is not str:
            raise ContentError(f"{_UNREADABLE}an object key of type {type(key).__name__}")
    if root and SEAL_FIELD in item:  # the record's seal is provenance, not content
        keys.remove(SEAL_FIELD)
    return keys


def _texts(content: object) -> Iterator[str]:
    stack = [_root(content)]
    pop, push = stack.pop, stack.append
    root = type(content) is dict  # json_root drops the seal of any other record mapping
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            yield item  # type: ignore[misc]
        elif kind is dict:
            for key in _sorted_keys(item, root):  # type: ignore[arg-type]
                push(item[key])  # type: ignore[index]
                push(key)
        elif kind is list or kind is tuple:
            stack.extend(reversed(item))  # type: ignore[call-overload]
        elif kind not in _NOT_TEXT:
            push(json_form(item))
        root = False


# Where a string stands, as a chain of (parent, key or index) pairs: one small tuple per
# member; the chain becomes a path only when a reason needs it.
_Node = tuple[Any, str | int] | None


def _walk(content: object) -> Iterator[tuple[_Node, str, bool]]:
    stack: list[tuple[Any, _Node, bool]] = [(_root(content), None, False)]
    pop, push = stack.pop, stack.append
    root = type(content) is dict
    while stack:
        item, node, is_key = pop()
        kind = type(item)
        if kind is str:
            yield node, item, is_key
        elif kind is dict:
            # keys are text too (a secret can be a key)
            for key in _sorted_keys(item, root):
                member = (node, key)
                push((item[key], member, False))
                push((key, member, True))
        elif kind is list or kind is tuple:
            stack.extend([(x, (node, i), False) for i, x in reversed(list(enumerate(item)))])
        elif kind not in _NOT_TEXT:
            push((json_form(item), node, is_key))
        root = False


def _path(node: _Node) -> Path:
    segments: list[str | int] = []
    while node is not None:
        node, segment = node
        segments.append(segment)
    return tuple(reversed(segments))


def is_plain_key(key: str) -> bool:
    """Return whether ``key`` is a plain identifier, shown in paths (unless withheld)."""
    return _PLAIN_KEY.fullmatch(key) is not None


def json_path(path: Path, withheld: Collection[str] = ()) -> str:
    """Render ``path`` as a JSON path (``$.items[3].text``).

    Args:
        path: keys and indices from the root.
        withheld: keys never to show (shown as ``*``), such as keys that hold PII.

    Returns:
        The path, with every key that is not a plain identifier, or is withheld,
        shown as ``*``.
    """
    parts = [ROOT]
    for segment in path:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif is_plain_key(segment) and segment not in withheld:
            parts.append(f".{segment}")
        else:
            parts.append(f".{WITHHELD_KEY}")
    return "".join(parts)
