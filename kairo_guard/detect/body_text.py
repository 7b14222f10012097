"""What a body's reader would leave out of its text, found cheaply.

A handler may read more of a body than one reading of it shows, and the indexer indexes
what any such reading would hold (more text indexed can only block more):

* a JSON parser's value of a body leaves out the first value of a repeated key (it
  keeps the last), and the sink's text reader skips a root seal field, which in a
  request body is client text like any other: :func:`value_holds_all_text` says when
  the body's strings must be read from its bytes as well;
* text read raw (a body that is not JSON, or JSON that stopped parsing part-way) may
  carry JSON string escapes (``\\u00e4``, ``\\"``, ``\\n``) or form encoding
  (``Caf%C3%A9+au+lait``) that the handler decodes: :func:`decoded_readings` gives
  those decoded forms of a piece of raw text, leniently (a bad escape stays as it is).
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote_plus

import orjson

from kairo_guard.core.types import SEAL_FIELD

# A stretch of JSON string content, with only escapes a JSON reader accepts; quotes,
# bad escapes and a backslash at the end stop it and are left as they are.
_STRING_RUN = re.compile(r'((?:[^"\\]++|\\u[0-9a-fA-F]{4}|\\["\\/bfnrt])++)')
_SURROGATE = re.compile("[\ud800-\udfff]")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_ESCAPED_COLON = (b"\\u003a", b"\\u003A")


def value_holds_all_text(value: object, data: bytes) -> bool:
    """Return whether ``value``, the parsed JSON text ``data``, holds every string of
    ``data`` as the sink's reader reads it: False when the root object has a seal field
    (the reader skips it) or an object repeats a key (the parser kept one value).

    A repeated key is found by its colon: every key is one colon in the bytes, and the
    value's compact JSON has one colon per key left plus those in its strings, which are
    no more than the bytes' unless a colon is escaped (then the answer is False).
    """
    if type(value) is dict and SEAL_FIELD in value:
        return False
    colons = data.count(b":")
    if not colons:
        return True
    if b"\\" in data and any(escape in data for escape in _ESCAPED_COLON):
        return False
    try:
        compact = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return compact.count(b":") == colons


def decoded_readings(text: str) -> list[str]:
    """Return the other readings of raw ``text`` a handler may decode it to, each
    different from ``text``: its JSON string escapes decoded; its form encoding
    (``application/x-www-form-urlencoded``) decoded as UTF-8, and that with its escapes
    decoded. Empty when the text has neither."""
    readings: list[str] = []
    if "\\" in text:
        readings.append(json_unescaped(text))
    if ("%" in text and _PERCENT.search(text)) or ("+" in text and "=" in text):
        form = unquote_plus(text, errors="replace")
        readings.append(form)
        if "\\" in form:
            readings.append(json_unescaped(form))
    return [reading for reading in dict.fromkeys(readings) if reading != text]


def json_unescaped(text: str) -> str:
    """Return ``text`` with each JSON string escape in it decoded (``\\u00e4``,
    surrogate pairs, ``\\n``, ``\\"``, ``\\/``, ...); a bad escape is kept as it is, a
    lone surrogate becomes U+FFFD."""
    parts = _STRING_RUN.split(text)  # every other part is a run of string content
    if len(parts) > 1:  # all runs decoded by one call: they hold no quote, no bad escape
        parts[1::2] = json.loads('["' + '","'.join(parts[1::2]) + '"]', strict=False)
    return _SURROGATE.sub("\ufffd", "".join(parts))
