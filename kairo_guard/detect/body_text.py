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
* text sent base64-encoded (a file's content in a JSON field, a MIME part, a token's
  payload) is read by whoever decodes it: :func:`base64_readings` gives the text such a
  run decodes to, which the record reader reads as well;
* a body that is not UTF-8 is read by its handler in the charset its Content-Type names
  (which the spool does not keep), or as Latin-1 (Starlette reads a form's raw bytes
  so): :func:`other_encodings` names the encodings it is read in as well.
"""

from __future__ import annotations

import binascii
import codecs
import html
import json
import re
from urllib.parse import unquote, unquote_plus

import orjson

from kairo_guard.core.types import SEAL_FIELD
from kairo_guard.detect.fields import record_strings
from kairo_guard.detect.shapes import runs

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
    UTF-8, the text its base64 runs decode to (:func:`base64_readings`, each with its
    own readings), and text under a right-to-left override (U+202E) in the order it
    is shown in. JSON text escaped again inside JSON text is decoded up to
    :data:`JSON_LEVELS` times, each level a reading. Empty, after one scan for each
    mark and one for long runs, when it has none of them."""
    readings: list[str] = []
    if "\\" in text:
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
    if len(text) >= BASE64_MIN_CHARS and (found := runs(text, _BASE64_LINE)):
        for decoded in _base64_runs(text, found):  # and what the decoded text holds
            readings += [decoded, *unescaped_readings(decoded)]
    if _RLO in text:  # stored reversed, shown in reading order
        readings.append(_OVERRIDDEN.sub(lambda m: m.group(1)[::-1], text))
    if not readings:  # (most text)
        return readings
    return [reading for reading in dict.fromkeys(readings) if reading != text]


_RLO = "\u202e"
_OVERRIDDEN = re.compile("\u202e([^\u202c\n\r\u2029]*)")
"""A right-to-left override (U+202E) and what it covers: to its pop (U+202C) or the
end of the paragraph. A reader sees that text in the reverse of its stored order."""


BASE64_MIN_CHARS = 96
"""The shortest base64 read as text: 72 bytes, about the least text that can share a
fingerprint (:data:`~kairo_guard.detect.winnow.GUARANTEED_SPAN` normalized characters).
Shorter runs are read when lines of one run (MIME wraps at 76, PEM at 64) add up to it."""
_BASE64_LINE = 48
"""The shortest line of a wrapped run that is joined to the next."""
_BASE64_WRAP = 128
"""The longest line of a wrapped run (MIME wraps at 76, PEM at 64): a longer one, one
whose length is not whole groups of four, or one that ends padded is a run of its own."""
_BASE64_HEAD = 96
"""How much of a run is decoded first to see whether it is text at all."""
_LINE_BREAK = re.compile(r"[ \t]*\r?\n[ \t]*")
_PADDED = re.compile(r"(?<==)(?!=)")  # after the padding of one run joined to the next
_WRAP = re.compile(r"[ \t]*\r?\n[ \t]*([A-Za-z0-9+/]+={0,2})(?![\w+/=.-])")
"""The next line of base64 wrapped in lines (MIME and PEM: the standard alphabet)."""


def base64_readings(text: str) -> list[str]:
    """Return the text each base64 run of ``text`` decodes to (standard or URL-safe
    alphabet, padded or not, wrapped in lines or not, runs joined by ``.`` as in a
    token or after another's padding), for runs of at least :data:`BASE64_MIN_CHARS`
    characters that decode to UTF-8 text (no control bytes but tab and line ends).
    Binary data, hex digests and words are not read: their first :data:`_BASE64_HEAD`
    characters do not decode to such text, and the rest of them is not decoded. One
    pass of the native run scanner (:func:`~kairo_guard.detect.shapes.runs`) when there
    is no long run."""
    if len(text) < BASE64_MIN_CHARS:
        return []
    return _base64_runs(text, runs(text, _BASE64_LINE))


def _base64_runs(text: str, found: list[tuple[int, int]]) -> list[str]:
    """:func:`base64_readings` of the runs ``found`` in ``text`` (long enough to be a
    line of a wrapped run)."""
    readings: list[str] = []
    at = 0
    for start, end in found:
        if start < at:  # (joined to the run before, as a line of it)
            continue
        line, width = end, end - start
        if width > _BASE64_WRAP or width % 4 or text[end - 1] == "=":
            width = -1  # one line, not the first of a wrapped run
        while width == line - start and (wrap := _WRAP.match(text, end)):
            end, width = wrap.end(), wrap.end(1) - wrap.start(1)  # lines of one width
        at = end
        if end - start < BASE64_MIN_CHARS:
            continue
        if end == line:
            readings += _run_texts(text[start:end])
        else:  # wrapped; or one line and a short word after it, read alone then
            readings += _run_texts(_LINE_BREAK.sub("", text[start:end])) or _run_texts(
                text[start:line]
            )
    return readings


def _run_texts(run: str) -> list[str]:
    """The texts of one run: its parts joined by ``.`` or after padding, each read."""
    texts: list[str] = []
    for part in run.split("."):
        units = _PADDED.split(part) if "=" in part.rstrip("=") else [part]
        texts += filter(None, map(_base64_text, units))
    return texts


def _base64_text(unit: str) -> str | None:
    """The UTF-8 text one run of base64 decodes to, or None (not base64, not text);
    its head is decoded first, and most runs end there. A run may be a piece of a longer
    one (a large body is read in segments, cut anywhere): it is read from whichever of
    its first four characters starts a group of four, and a character cut at either end
    is left out."""
    unit = unit.rstrip("=")
    if len(unit) < BASE64_MIN_CHARS or not unit.isascii():
        return None
    for offset in range(4):
        head = unit[offset : offset + _BASE64_HEAD]
        if _text_head(head[: len(head) - len(head) % 4]):
            break
    else:
        return None
    unit = unit[offset:]
    if len(unit) % 4 == 1:  # a lone last character ends no byte
        unit = unit[:-1]
    data = _decoded(unit + "=" * (-len(unit) % 4))
    text = None if data is None else _utf8_text(data)
    return text if text is not None and text.strip() else None


def _text_head(head: str) -> bool:
    """Whether ``head`` (ASCII, a multiple of 4 long) is base64 of UTF-8 text, possibly
    cut at either end."""
    data = _decoded(head)
    return data is not None and _utf8_text(data) is not None


def _decoded(unit: str) -> bytes | None:
    if "-" in unit or "_" in unit:  # the URL-safe alphabet
        unit = unit.replace("-", "+").replace("_", "/")
    try:
        return binascii.a2b_base64(unit, strict_mode=True)
    except binascii.Error:
        return None


def _utf8_text(data: bytes) -> str | None:
    """``data`` as UTF-8 without control bytes, its first (up to 3) continuation bytes
    and an incomplete character at its end left out (a piece of a longer run may be cut
    inside characters); None when it is not such text."""
    if len(data.translate(None, _CONTROL_BYTES)) != len(data):
        return None
    start = 0
    while start < 3 and start < len(data) and 0x80 <= data[start] < 0xC0:
        start += 1
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data[start:], final=False)
    except UnicodeDecodeError:
        return None


def json_unescaped(text: str) -> str:
    """Return ``text`` with each JSON string escape in it decoded (``\\u00e4``,
    surrogate pairs, ``\\n``, ``\\"``, ``\\/``, ...); a bad escape is kept as it is, a
    lone surrogate becomes U+FFFD."""
    parts = _STRING_RUN.split(text)  # every other part is a run of string content
    if len(parts) > 1:  # all runs decoded by one call: they hold no quote, no bad escape
        parts[1::2] = json.loads('["' + '","'.join(parts[1::2]) + '"]', strict=False)
    return _SURROGATE.sub("\ufffd", "".join(parts))
