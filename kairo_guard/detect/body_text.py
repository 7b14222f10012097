"""What a body's reader would leave out of its text, found cheaply.

A handler may read more of a body than one reading of it shows, and the indexer indexes
what any such reading would hold (more text indexed can only block more):

* a JSON parser's value of a body leaves out the first value of a repeated key (it
  keeps the last), and the sink's text reader skips a root seal field, which in a
  request body is client text like any other: :func:`value_holds_all_text` says when
  the body's strings must be read from its bytes as well;
* text read raw (a body that is not JSON, or JSON that stopped parsing part-way) may
  carry form encoding (``Caf%C3%A9+au+lait``) that the handler decodes, and so may a
  JSON string (a form sent as a field): :func:`decoded_readings` and
  :func:`nested_readings` give those decoded forms, leniently;
* JSON string escapes (``\\u00e4``, ``\\"``, ``\\n``) in text read raw, or in a string
  that holds JSON text of its own (``json.dumps`` of a document sent as a field), HTML
  character references and percent-encoding are decoded by
  :func:`unescaped_readings`, which the record reader applies to all text
  (:func:`~kairo_guard.detect.winnow.record_text`): on both sides of the net;
* a body that is not UTF-8 is read by its handler in the charset its Content-Type names
  (which the spool does not keep), or as Latin-1 (Starlette reads a form's raw bytes
  so): :func:`other_encodings` names the encodings it is read in as well.
"""

from __future__ import annotations

import codecs
import html
import json
import re
from urllib.parse import unquote, unquote_plus

import orjson

from kairo_guard.core.types import SEAL_FIELD
from kairo_guard.detect.fields import record_strings

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
    """Return the other readings of raw ``text`` a handler may decode it to, besides its
    JSON escapes (which :func:`~kairo_guard.detect.winnow.record_text` reads in any
    text): its form encoding (``application/x-www-form-urlencoded``) decoded as UTF-8.
    Empty when the text has none."""
    if ("%" in text and _PERCENT.search(text)) or ("+" in text and "=" in text):
        form = unquote_plus(text, errors="replace")
        if form != text:
            return [form]
    return []


def nested_readings(value: object, data: bytes) -> list[str]:
    """Return the readings (:func:`decoded_readings`) of the strings of ``value``, the
    parsed JSON text ``data``, that hold a form of their own. Empty when none does,
    found from the bytes without walking the value."""
    if b"%" not in data and b"+" not in data and b"\\u002" not in data:
        return []  # "%" and "+" may be written \u0025 and \u002b
    encoded = [s for s in record_strings(value) if "%" in s or "+" in s]
    return decoded_readings(" ".join(encoded)) if encoded else []


EIGHT_BIT_ENCODINGS = ("cp1252", "cp1251")
"""What 8-bit text that is not UTF-8 is read as: the Western (a superset of Latin-1's
letters) and Cyrillic Windows code pages."""
MULTIBYTE_ENCODINGS = ("shift_jis", "euc_jp", "gb18030", "big5", "euc_kr")
"""East Asian encodings such text is read in too, each where all of it is valid."""
_CONTROL_BYTES = bytes([*range(9), 11, 12, *range(14, 32), 127])
_WIDE = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
_CHECK_BYTES = 1 << 20


def other_encodings(data: bytes) -> list[str]:
    """Return the encodings besides UTF-8 a handler may read ``data`` in: none for UTF-8
    text; the UTF-16 or UTF-32 its first bytes announce, when all of it decodes so;
    else, for 8-bit text (no control bytes but tab and line ends; binary data has them),
    :data:`EIGHT_BIT_ENCODINGS` and each of :data:`MULTIBYTE_ENCODINGS` it is valid in."""
    if data.isascii() or _valid(data, "utf-8"):
        return []
    wide = json.detect_encoding(data[:4])
    if wide in _WIDE:
        return [wide] if _valid(data, wide) else []
    if len(data.translate(None, _CONTROL_BYTES)) != len(data):
        return []
    return [*EIGHT_BIT_ENCODINGS, *(e for e in MULTIBYTE_ENCODINGS if _valid(data, e))]


def _valid(data: bytes, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        for at in range(0, len(data), _CHECK_BYTES):
            decoder.decode(data[at : at + _CHECK_BYTES])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


JSON_LEVELS = 3
"""How many times JSON text escaped inside JSON text is decoded (a document serialized
into a field of a record that is serialized into a log line is two)."""


def unescaped_readings(text: str) -> list[str]:
    """Return ``text`` decoded as a program that finds it escaped would decode it, each
    reading different from ``text``: its JSON string escapes (:func:`json_unescaped`),
    its HTML character references (``&eacute;``, ``&#233;``), its percent-encoding as
    UTF-8. JSON text escaped again inside JSON text is decoded up to
    :data:`JSON_LEVELS` times, each level a reading. Empty, after one scan for each
    mark, when it has none of them."""
    readings = []
    unescaped = text
    for _ in range(JSON_LEVELS):
        if "\\" not in unescaped:
            break
        once = json_unescaped(unescaped)
        if once == unescaped:  # only escapes a reader keeps as they are (C:\\data)
            break
        readings.append(unescaped := once)
    if "&" in text:
        readings.append(html.unescape(text))
    if "%" in text and _PERCENT.search(text):
        readings.append(unquote(text, errors="replace"))
    return [reading for reading in dict.fromkeys(readings) if reading != text]


def json_unescaped(text: str) -> str:
    """Return ``text`` with each JSON string escape in it decoded (``\\u00e4``,
    surrogate pairs, ``\\n``, ``\\"``, ``\\/``, ...); a bad escape is kept as it is, a
    lone surrogate becomes U+FFFD."""
    parts = _STRING_RUN.split(text)  # every other part is a run of string content
    if len(parts) > 1:  # all runs decoded by one call: they hold no quote, no bad escape
        parts[1::2] = json.loads('["' + '","'.join(parts[1::2]) + '"]', strict=False)
    return _SURROGATE.sub("\ufffd", "".join(parts))
