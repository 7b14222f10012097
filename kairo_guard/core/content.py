"""Canonical encoding and digest of record content.

The digest is the contract that binds a seal to its content:

* JSON-like content (dict, list, str, number, bool, None): SHA-256 over its canonical
  JSON: UTF-8, object keys sorted, no whitespace, non-ASCII left as is, floats in their
  shortest round-trip form. A dict's seal field (``_kairo``) is not content.
* ``bytes``: SHA-256 over the bytes as they are (an HTTP body, a file).

Digests are lowercase hex.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson

from kairo_guard.core.exceptions import ContentError
from kairo_guard.core.types import SEAL_FIELD

_SORT = orjson.OPT_SORT_KEYS
_sha256 = hashlib.sha256
_dumps = orjson.dumps


def canonical_json(content: Any) -> bytes:
    """Return the canonical JSON encoding of ``content`` (without its seal field).

    Raises:
        ContentError: if the content is not JSON-like (non-string keys, integers past
            64 bits, unknown types).
    """
    if isinstance(content, Mapping) and SEAL_FIELD in content:
        content = {k: v for k, v in content.items() if k != SEAL_FIELD}
    try:
        return _dumps(content, option=_SORT)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ContentError(f"content has no canonical JSON encoding: {exc}") from exc


def content_digest(content: Any) -> str:
    """Return the SHA-256 content digest (hex) of a record's content.

    Raises:
        ContentError: if the content cannot be canonically encoded.
    """
    if isinstance(content, bytes | bytearray | memoryview):
        return _sha256(content).hexdigest()
    return _sha256(canonical_json(content)).hexdigest()


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
    if not line.endswith(b'"}'):
        return None
    at = line.rfind(_MEMBER)
    if at > 0:
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
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f"
    "\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]+"
)
"""Format characters (Unicode category Cf) and control characters that are not white
space (Cc): invisible, removed before anything else."""


def strip_invisible(text: str) -> str:
    """``text`` without invisible characters: slipped into words (a NUL after every
    letter, zero-width spaces, soft hyphens) they would hide them from every matcher."""
    return _INVISIBLE.sub("", text)
