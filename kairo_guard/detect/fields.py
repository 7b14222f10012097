"""A record's strings, each with where it stands: the JSON path a reason may name.

A refusal says *where* in a record a check fired (``$.features.lang``,
``$.items[3].text``, ``$`` for a bare string), never *what* it found there. Paths are
made of keys and indices; a key is shown only when it is a plain identifier (letters,
digits, ``_``, ``-``, at most 64 characters) and not itself withheld (a key that holds
PII): any other key is shown as ``*``, so a path never carries free text.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any, NamedTuple

from kairo_guard.core.content import RawJSON
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
    :func:`record_strings`."""
    return [Field(_path(node), text, is_key) for node, text, is_key in _walk(content)]


def record_strings(content: object) -> list[str]:
    """Return the record's strings in a stable order: each key before its value, keys
    in sorted order, list items in order; the seal field is skipped, numbers and
    booleans are not text, bytes are decoded as UTF-8 with replacement.

    The same strings in the same order as :func:`record_fields`, without paths: this
    runs on every record the fingerprint net reads, so it keeps no path state (a test
    holds the two walks to one order).
    """
    return list(_texts(content))


def _texts(content: object) -> Iterator[str]:
    stack = [content]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, RawJSON):  # before bytes: it is a bytes subclass
            push(item.value())
        elif isinstance(item, bytes | bytearray):
            yield bytes(item).decode("utf-8", errors="replace")
        elif isinstance(item, Mapping):
            keys = sorted((k for k in item if k != SEAL_FIELD), key=str, reverse=True)
            for key in keys:
                push(item[key])
                push(key)
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))


# Where a string stands, as a chain of (parent, key or index) pairs: one small tuple per
# member; the chain becomes a path only when a reason needs it.
_Node = tuple[Any, str | int] | None


def _walk(content: object) -> Iterator[tuple[_Node, str, bool]]:
    stack: list[tuple[object, _Node, bool]] = [(content, None, False)]
    pop, push = stack.pop, stack.append
    while stack:
        item, node, is_key = pop()
        if isinstance(item, str):
            yield node, item, is_key
        elif isinstance(item, RawJSON):  # before bytes: it is a bytes subclass
            push((item.value(), node, False))
        elif isinstance(item, bytes | bytearray):
            yield node, bytes(item).decode("utf-8", errors="replace"), is_key
        elif isinstance(item, Mapping):
            # keys are text too (a secret can be a key); the seal field is provenance
            keys = sorted((k for k in item if k != SEAL_FIELD), key=str, reverse=True)
            for key in keys:
                member = (node, key if type(key) is str else _key_segment(key))
                push((item[key], member, False))
                push((key, member, True))
        elif isinstance(item, list | tuple):
            stack.extend([(x, (node, i), False) for i, x in reversed(list(enumerate(item)))])


def _path(node: _Node) -> Path:
    segments: list[str | int] = []
    while node is not None:
        node, segment = node
        segments.append(segment)
    return tuple(reversed(segments))


def _key_segment(key: object) -> str:
    if isinstance(key, bytes | bytearray):
        return bytes(key).decode("utf-8", errors="replace")
    return key if isinstance(key, str) else str(key)


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
