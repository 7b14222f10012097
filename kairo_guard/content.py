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
from collections.abc import Mapping
from typing import Any

import orjson

from kairo_guard.exceptions import ContentError
from kairo_guard.types import SEAL_FIELD

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
