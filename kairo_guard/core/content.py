"""Canonical encoding and digest of record content: the one definition of "the content".

The digest is the contract that binds a seal to its content, and the text the
fingerprint net and the PII gate read (:mod:`kairo_guard.detect.fields`) is read from the
same content, mapped the same way (:func:`json_form`): what is digested is what is read.

* JSON content (dict with string keys, list, tuple, str, int, float, bool, None): SHA-256
  over its canonical JSON: UTF-8, object keys sorted, no whitespace, non-ASCII left as is,
  floats in their shortest round-trip form. The seal field (``_kairo``) of a record given
  as a mapping is not content; one anywhere else (further down, a dataclass field, in
  an Enum member's value) is.
* Other values map to JSON, one level at a time, by :func:`json_form`: a dataclass
  instance is the object of *all* its fields (names starting with ``_`` included); an
  ``Enum`` member is its value; a subclass of a JSON type is the value it stores; a
  ``Mapping`` is the object of its items; a ``UUID`` and a ``datetime``, ``date`` or
  ``time`` are strings (``str()``, ``isoformat()``).
* ``bytes``, ``bytearray``, ``memoryview`` as the whole content: SHA-256 over the bytes
  as they are (an HTTP body, a file). Their text is the value of the JSON they hold
  (escapes decoded, as the code that parses them reads them; canonical JSON bytes are
  read as the record they encode), else the bytes read as UTF-8
  (:func:`kairo_guard.detect.fields.record_strings`).

Anything else is refused with :class:`ContentError`: sets (no order), bytes inside a
record, keys that are not strings, a dataclass or a subclass of a JSON type holding
attributes beside its fields or value (in its ``__dict__`` or in ``__slots__``), a
dataclass that is also a subclass of a JSON type or a ``Mapping`` (two readings of one
value), a ``str`` Enum member whose text is not its value,
``orjson.Fragment`` (text the reader would have to parse), any other object. Refused
content cannot be digested or read, so it gets no seal and blocks at a sink.

Digests are lowercase hex.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import re
import types
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

import orjson

from kairo_guard.core.exceptions import ContentError
from kairo_guard.core.types import SEAL_FIELD

# Subclasses, dataclasses and dates go through json_form: orjson's own reading of them
# (a dataclass's __dict__ without its "_" names, a str Enum's text) is not the definition.
_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
_sha256 = hashlib.sha256
_dumps = orjson.dumps
_JSON_TYPES = frozenset({dict, list, tuple, str, int, float, bool, type(None)})
_BASES: tuple[tuple[type, Any], ...] = (
    (str, str.__str__),  # the characters stored, whatever __str__ says
    (int, int.__index__),
    (float, float.__float__),
    (dict, lambda d: dict(dict.items(d))),  # the members stored, whatever __iter__ says
    (list, list.copy),
    (tuple, lambda t: tuple.__getitem__(t, slice(None))),
)
_DATES = frozenset({datetime.datetime, datetime.date, datetime.time})


def json_form(value: object) -> object:
    """Return the JSON form of a value that is not of a JSON type, one level down (its
    members are mapped in turn), as the digest and the text reader both map it.

    Raises:
        ContentError: for a value outside the definition (see the module docstring).
    """
    if isinstance(value, enum.Enum):
        return _enum_value(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_fields(value)
    for base, stored in _BASES:
        if isinstance(value, base):
            _refuse_attributes(value, ())
            return stored(value)
    if isinstance(value, Mapping):
        return dict(value.items())
    if type(value) is uuid.UUID:
        return str(value)
    if type(value) in _DATES:
        return value.isoformat()  # type: ignore[attr-defined]
    raise ContentError(_refusal(value))


def _enum_value(member: enum.Enum) -> object:
    value = member.value
    for base, stored in _BASES[:3]:
        if isinstance(member, base) and stored(member) != value:
            raise ContentError(
                f"an Enum member of {type(member).__name__} whose {base.__name__} is not "
                "its value has no canonical form: give its value"
            )
    return value


def _dataclass_fields(value: Any) -> dict[str, object]:
    if isinstance(value, _TWO_READINGS):
        raise ContentError(
            f"a {type(value).__name__} is a dataclass and a subclass of a JSON type or a "
            "Mapping: which of its two readings is its content is unclear, give one"
        )
    names = [f.name for f in dataclasses.fields(value)]
    _refuse_attributes(value, names)
    try:
        return {name: getattr(value, name) for name in names}
    except AttributeError as exc:
        raise ContentError(f"a {type(value).__name__} with a field not set: {exc}") from exc


_TWO_READINGS = (*(base for base, _ in _BASES), Mapping)


def _refuse_attributes(value: object, names: Any) -> None:
    extra = getattr(value, "__dict__", None)
    if (extra and not extra.keys() <= set(names)) or any(
        name not in names and _holds(slot, value) for name, slot in _slots(type(value))
    ):
        raise ContentError(
            f"a {type(value).__name__} holding attributes beside its "
            f"{'fields' if names else 'value'} has no canonical form: the digest and the "
            "text reader would not cover them"
        )


def _slots(kind: type) -> tuple[tuple[str, Any], ...]:
    """The ``__slots__`` members a class and its bases define: attributes stored beside
    ``__dict__``, which a subclass of a JSON type or a dataclass may hold as well."""
    found = _SLOTS.get(kind)
    if found is None:
        found = _SLOTS[kind] = _slot_members(kind)
    return found


_SLOTS: weakref.WeakKeyDictionary[type, tuple[tuple[str, Any], ...]] = weakref.WeakKeyDictionary()


def _slot_members(kind: type) -> tuple[tuple[str, Any], ...]:
    return tuple(
        (name, member)
        for cls in kind.__mro__
        if "__slots__" in vars(cls)  # a class written in Python (C types' members: no)
        for name, member in vars(cls).items()
        if isinstance(member, types.MemberDescriptorType)
    )


def _holds(slot: Any, value: object) -> bool:
    try:
        slot.__get__(value, type(value))
    except AttributeError:
        return False  # declared, never set
    return True


def _refusal(value: object) -> str:
    kind = type(value).__name__
    if isinstance(value, set | frozenset):
        return f"a {kind} has no canonical form (no order): give a sorted list"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"{kind} inside a record has no canonical form: give text, or bytes alone"
    return (
        f"content of type {kind} has no canonical form: give JSON (dict, list, str, "
        "numbers), a dataclass, an Enum member, or bytes as the whole content"
    )


def json_root(content: object) -> object:
    """Return ``content`` as a JSON value at its root (mapped by :func:`json_form`),
    without its seal field if it is a record given as a mapping.

    Raises:
        ContentError: for content outside the definition.
    """
    # a record's seal is a member of a record given as a mapping: a dataclass's field or
    # an Enum member's value of that name is content
    record = type(content) is dict or (
        isinstance(content, Mapping) and not isinstance(content, enum.Enum)
    )
    while type(content) not in _JSON_TYPES:
        content = json_form(content)
    if record and type(content) is dict and SEAL_FIELD in content:
        content = {k: v for k, v in content.items() if k != SEAL_FIELD}
    return content


def canonical_json(content: Any) -> bytes:
    """Return the canonical JSON encoding of ``content`` (without its seal field).

    Raises:
        ContentError: if the content is outside the definition (see the module
            docstring), or has integers past 64 bits or text that is not UTF-8.
    """
    try:
        return _dumps(json_root(content), default=json_form, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, ContentError) else exc
        raise ContentError(f"content has no canonical JSON encoding: {cause}") from exc


def content_digest(content: Any) -> str:
    """Return the SHA-256 content digest (hex) of a record's content.

    Raises:
        ContentError: if the content cannot be canonically encoded.
    """
    if isinstance(content, bytes | bytearray):
        return _sha256(content).hexdigest()
    if isinstance(content, memoryview):
        return _sha256(content if content.c_contiguous else content.tobytes()).hexdigest()
    return _sha256(canonical_json(content)).hexdigest()


def content_text(content: bytes | bytearray | memoryview) -> str:
    """Return the text of bytes given as the whole content: UTF-8, with replacement."""
    data = content.tobytes() if isinstance(content, memoryview) else content
    return str(data, "utf-8", "replace")


class RawJSON(bytes):
    """JSON text whose value is parsed only if someone needs it (a content check)."""

    __slots__ = ()

    def value(self) -> Any:
        """Return the parsed JSON value."""
        return orjson.loads(bytes(self))  # orjson takes exact bytes only


_SEAL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~%-"
_MEMBER = b',"' + SEAL_FIELD.encode("ascii") + b'":"'
_ONLY_MEMBER = b'{"' + SEAL_FIELD.encode("ascii") + b'":"'


def sealed_line(content: Mapping[str, Any], seal: str) -> bytes:
    """Return the JSONL line of a sealed record: canonical content, seal as last member.

    Lines in this form can be verified byte for byte: removing the seal member leaves
    exactly the bytes the digest was computed over (see :func:`split_sealed_line`).

    Raises:
        ContentError: if the content cannot be canonically encoded.
    """
    body = canonical_json(content)
    if body == b"{}":
        return _ONLY_MEMBER + seal.encode("ascii") + b'"}\n'
    return body[:-1] + _MEMBER + seal.encode("ascii") + b'"}\n'


def split_sealed_line(line: bytes) -> tuple[bytes, str] | None:
    """Split a line written by :func:`sealed_line` into (content bytes, seal).

    Returns None for any other shape. The content bytes are only *candidate* canonical
    bytes: they are the record's content exactly when their SHA-256 equals the digest
    in a verified seal (canonical JSON never repeats a key or holds the seal field).
    """
    if not line.endswith(b'"}') or not line.startswith(b"{"):
        return None  # (bytes sealed whole, cut before a '}', are not an object's line)
    at = line.rfind(_MEMBER)
    if at > 1:  # '{,"_kairo"...' is no line sealed_line writes: {} has no comma
        body = line[:at] + b"}"
        start = at + len(_MEMBER)
    elif line.startswith(_ONLY_MEMBER):
        body, start = b"{}", len(_ONLY_MEMBER)
    else:
        return None
    seal = line[start:-2]
    if seal.translate(None, _SEAL_ALPHABET):
        return None  # not a seal's characters: another structure, or escapes
    return body, seal.decode("ascii")


_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\u034f\u0600-\u0605\u061c\u06dd"
    "\u070f\u0890-\u0891\u08e2\u115f-\u1160\u17b4-\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U000110bd"
    "\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff]+"
)
"""Format characters (Unicode category Cf), control characters that are not white space
(Cc), and every other default-ignorable code point (Unicode's
Default_Ignorable_Code_Point: the combining grapheme joiner, variation selectors, Hangul
fillers, Khmer inherent vowels, Mongolian variation selectors, and the unassigned ones
reserved as such): invisible, removed before anything else."""


_ASCII_INVISIBLE = bytes([*range(0x09), *range(0x0E, 0x1C), 0x7F])
"""The ASCII characters of :data:`_INVISIBLE`."""


def strip_invisible(text: str) -> str:
    """``text`` without invisible characters: slipped into words (a NUL after every
    letter, zero-width spaces, soft hyphens) they would hide them from every matcher."""
    if text.isascii():  # most text: one pass in C says whether there is anything to strip
        raw = text.encode("ascii")
        if len(raw.translate(None, _ASCII_INVISIBLE)) == len(raw):
            return text
    return _INVISIBLE.sub("", text)
