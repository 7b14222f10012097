"""Fingerprinting request bodies as they stream, with bounded memory.

A body is indexed as the text a sink's reader would see of it. One that fits in one
segment (:data:`SEGMENT_BYTES`) and is one JSON value is read whole, by its strings in
the order of :func:`~kairo_guard.detect.fields.record_strings` (keys sorted), and also
streamed as below when that value leaves text of the body out (the first value of a
repeated key, a root seal field: :mod:`~kairo_guard.detect.body_text`). Any other
body (larger, JSON lines, JSON that only Python's lenient reader accepts, not JSON at
all) is decoded as it streams, by :class:`BodyText`, and indexed in text segments of
:data:`SEGMENT_BYTES` characters, each carrying the last :data:`OVERLAP_BYTES`
characters of the previous one, so a copied span up to that long is always inside one
segment and longer ones leave at least half of it in one.

A streamed body in UTF-16 or UTF-32 that opens JSON is read as the UTF-8 of its text
(Python's json detects these encodings, as :func:`json.detect_encoding`; a body under 8
bytes is read as text). A streamed body whose first byte (after a UTF-8 byte order mark
and whitespace) opens a JSON value is read as JSON (one value, or several as JSON
lines): its keys and string values, decoded (``\\u00e4``, ``\\n`` and ``\\"`` are the
characters they stand for), in document order, space separated; a string longer than a
chunk is decoded a piece at a time, so no string is ever held whole. Strings are read as
orjson reads them, else as Python's json does (lone surrogates, control characters).
What lies between strings must be JSON punctuation, numbers and literals (``NaN`` and
``Infinity`` included, which Python's reader accepts): they carry no text; nesting is
not checked (a misplaced bracket hides no text either). Anything else (a bad escape,
invalid UTF-8, a stray word) is malformed JSON: from that chunk on the body is read as
UTF-8 text, the chunk included, so nothing is left unindexed (fail closed). Each segment
of text read raw (this, and a body that does not open JSON: JSON lines after a bad
first line, a JSON text sequence, a form), and each segment of JSON strings that hold
JSON escapes or a form of their own (a document sent as ``json.dumps`` text in a
field), is indexed also with its JSON escapes and its form encoding decoded, as a
handler may read it; so are such strings of a body read whole. A body that is not
UTF-8 is read once more in each charset its handler may read it in
(:func:`~kairo_guard.detect.body_text.other_encodings`). Numbers, booleans and nulls are not
text; unlike the sink's reader, a streamed body's seal field is indexed too (more text
indexed can only block more).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
from collections.abc import Callable

import orjson

from kairo_guard.core.types import TenantId
from kairo_guard.detect.body_text import (
    decoded_readings,
    nested_readings,
    other_encodings,
    value_holds_all_text,
)
from kairo_guard.detect.fingerprint import FingerprintIndex

SEGMENT_BYTES = 1 << 20
OVERLAP_BYTES = 4096
JSON_OPENERS = b'{["'
"""First bytes of a body read as JSON when it streams."""

_WS = b" \t\r\n"
_BOM = codecs.BOM_UTF8
_NUMBER = rb"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+"
# the literals Python's json also reads (NaN, Infinity) carry no text either
_TOKEN = rb"[ \t\r\n\[\]{}:,]++|" + _NUMBER + rb"|true|false|null|NaN|-?+Infinity"
_STRING = rb'"((?:[^"\\]++|\\.)*+)"'
# complete tokens and strings, as far as they go (possessive: no backtracking)
_COMPLETE = re.compile(rb"(?:" + _TOKEN + rb"|" + _STRING + rb")*+", re.S)
_STRINGS = re.compile(_STRING, re.S)
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+', re.S)
_PARTIAL_TOKEN = re.compile(rb"[A-Za-z0-9+.\-]{0,64}")
_HIGH_SURROGATES = (b"d8", b"d9", b"da", b"db")
_SURROGATE = re.compile("[\ud800-\udfff]")
_TOKEN_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-.")


class Malformed(ValueError):
    """The body stopped being JSON; the rest is read as text."""


class BodyText:
    """A large body's text, decoded as its bytes arrive and handed to ``emit`` in
    overlapping segments of at most ``segment + overlap`` characters."""

    __slots__ = (
        "_chars",
        "_emit",
        "_emitted",
        "_in_string",
        "_json",
        "_overlap",
        "_parts",
        "_pending",
        "_recode",
        "_segment",
        "_utf8",
    )

    def __init__(self, emit: Callable[[str], object], segment: int, overlap: int) -> None:
        self._emit = emit
        self._segment = segment
        self._overlap = overlap
        self._parts: list[str] = []
        self._chars = 0
        self._emitted = False
        self._json: bool | None = None
        self._in_string = False
        self._pending = b""
        self._recode: codecs.IncrementalDecoder | None = None
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, data: bytes) -> None:
        """Decode ``data``, the next bytes of the body; emit every full segment."""
        if self._json is None:
            data, self._pending = self._pending + data, b""
            if len(data) < 8:  # a byte order mark and a character in any encoding: wait
                self._pending = data
                return
            data = self._detect(data)
        elif self._recode is not None:
            data = self._recode.decode(data).encode()
        if self._json:
            data, self._pending = self._pending + data, b""
            try:
                self._decode(data)
            except Malformed:
                self._json = False
                self._add(" ")
                self._add(self._utf8.decode(data))
        else:
            self._add(self._utf8.decode(data))
        self._flush(final=False)

    def _detect(self, data: bytes) -> bytes:
        # Python's json reads bytes in UTF-16 or UTF-32, and UTF-8 behind a byte order
        # mark: such a body is read as the UTF-8 of its text, if that opens JSON
        encoding = json.detect_encoding(data)
        if encoding not in ("utf-8", "utf-8-sig"):
            recode = codecs.getincrementaldecoder(encoding)(errors="replace")
            recoded = recode.decode(data).encode()
            if recoded.lstrip(_WS)[:1] in JSON_OPENERS:
                self._recode = recode
                data = recoded
        data = data.removeprefix(_BOM)
        self._json = data.lstrip(_WS)[:1] in JSON_OPENERS
        return data

    def close(self) -> None:
        """Emit what is left (a partial token or string at the end is read as text)."""
        if self._json is None:  # fewer than 8 bytes in all: read as text
            self._json = False
        if self._recode is not None:
            self._pending += self._recode.decode(b"", final=True).encode()
        if self._json and self._pending and not self._in_string:
            if _COMPLETE.fullmatch(self._pending) is None:
                self._add(" " + self._utf8.decode(self._pending))
        elif self._pending:
            self._add(self._utf8.decode(self._pending))
        self._pending = b""
        self._add(self._utf8.decode(b"", final=True))
        self._flush(final=True)

    def _decode(self, data: bytes) -> None:
        pos = 0
        if self._in_string:
            end = _STRING_REST.match(data).end()  # type: ignore[union-attr]
            if end == len(data) or data[end] != 0x22:  # the string goes on
                self._string_piece(data)
                return
            self._add(_decode_strings([data[:end]])[0])
            self._in_string = False
            pos = end + 1
        end = _COMPLETE.match(data, pos).end()  # type: ignore[union-attr]
        self._add_strings(_STRINGS.findall(data, pos, end))
        rest = data[end:]
        if rest[:1] == b'"':
            self._add(" ")
            self._in_string = True
            self._string_piece(rest[1:])
            return
        # a number or literal cut at the chunk's end waits for the next chunk
        start = end
        while start > pos and data[start - 1] in _TOKEN_CHARS:
            start -= 1
        if _PARTIAL_TOKEN.fullmatch(data, start) is None:
            raise Malformed
        self._pending = data[start:]

    def _string_piece(self, data: bytes) -> None:
        cut = _safe_cut(data)
        if cut:
            self._add(_decode_strings([data[:cut]])[0])
        self._pending = data[cut:]

    def _add_strings(self, raw: list[bytes]) -> None:
        if raw:
            self._add(" " + " ".join(_decode_strings(raw)))

    def _add(self, text: str) -> None:
        if text:
            self._parts.append(text)
            self._chars += len(text)

    def _flush(self, *, final: bool) -> None:
        size = self._segment + self._overlap
        if self._chars < size and not final:
            return
        text = "".join(self._parts)
        start = 0
        while len(text) - start >= size:
            self._emit_segment(text[start : start + size])
            self._emitted = True
            start += self._segment
        if final:
            rest = text[start:]
            # after a segment, the rest is new only past the overlap it repeated
            if rest.strip() and (not self._emitted or len(rest) > self._overlap):
                self._emit_segment(rest)
            text, start = "", 0
        self._parts = [text[start:]] if start < len(text) else []
        self._chars = len(text) - start

    def _emit_segment(self, segment: str) -> None:
        self._emit(segment)
        # raw text, or JSON strings, that hold a form: a handler may decode it (escapes:
        # the record reader decodes them in any text)
        for reading in decoded_readings(segment):
            self._emit(reading)


def _decode_strings(raw: list[bytes]) -> list[str]:
    """The JSON strings whose bodies (between the quotes) are ``raw``, as strictly as
    orjson reads them, else as leniently as Python's json (lone surrogates become
    U+FFFD, control characters are kept): a handler may read them either way."""
    joined = b'["' + b'","'.join(raw) + b'"]'
    try:
        decoded: list[str] = orjson.loads(joined)
    except orjson.JSONDecodeError:
        try:
            decoded = json.loads(joined, strict=False)
        except ValueError as exc:  # bad escape or invalid UTF-8
            raise Malformed from exc
        decoded = [_SURROGATE.sub("\ufffd", text) for text in decoded]
    return decoded


def _safe_cut(data: bytes) -> int:
    """Where a string's body may be cut: not inside a UTF-8 sequence, an escape or a
    surrogate pair (the caller found no closing quote)."""
    cut = len(data)
    lead = cut - 1
    while lead > cut - 4 and lead > 0 and data[lead] & 0xC0 == 0x80:
        lead -= 1
    if lead >= 0 and data[lead] >= 0xC0:
        size = 2 if data[lead] < 0xE0 else 3 if data[lead] < 0xF0 else 4
        if cut - lead < size:
            cut = lead
    # a run of backslashes is pairs ("\\"), then, if odd, one escape of 2 or 6 bytes
    back = data.rfind(b"\\", max(0, cut - 12), cut)
    while back >= 0:
        run = back
        while run > 0 and data[run - 1] == 0x5C:
            run -= 1
        if (back - run) % 2 == 1:  # pairs only: none is cut
            return cut
        length = 6 if data[back + 1 : back + 2] == b"u" else 2
        high = length == 6 and data[back + 2 : back + 4].lower() in _HIGH_SURROGATES
        if back + length <= cut and not (high and back + length + 6 > cut):
            return cut
        cut = back  # before the escape, or before a high surrogate and its pair
        back = data.rfind(b"\\", max(0, cut - 12), cut)
    return cut


def read_body(
    data: bytes,
    emit: Callable[[object], object],
    *,
    segment_bytes: int = SEGMENT_BYTES,
    overlap: int = OVERLAP_BYTES,
) -> None:
    """Hand ``emit`` the content of a whole body as :class:`StreamingIndexer` reads it
    (the spool's indexer, which has the body at once): one JSON value when the body
    fits in one segment and parses, else its text in overlapping segments; both when
    the value leaves text of the body out (a repeated key, a root seal field); a body
    that is not UTF-8 also as its text in each other encoding it may be read in."""
    utf8 = False
    if len(data) <= segment_bytes:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:  # JSON lines, NaN, lone surrogates, or no JSON
            pass
        else:
            utf8 = True  # orjson reads UTF-8 only
            emit(value)
            for reading in nested_readings(value, data):
                emit(reading)
            if value_holds_all_text(value, data):
                return
    text = BodyText(emit, segment_bytes, overlap)
    for at in range(0, len(data), segment_bytes):
        text.push(data[at : at + segment_bytes])
    text.close()
    for encoding in [] if utf8 else other_encodings(data):  # its handler may know its charset
        recoded = BodyText(emit, segment_bytes, overlap)
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        for at in range(0, len(data), segment_bytes):
            recoded.push(decoder.decode(data[at : at + segment_bytes]).encode())
        recoded.push(decoder.decode(b"", final=True).encode())
        recoded.close()


class StreamingIndexer:
    """Feeds one request body to the fingerprint index, a segment at a time.

    Args:
        index: the fingerprint index.
        tenant: whose content the body is.
        segment_bytes: a segment's size (bytes while the body may still fit in one,
            then characters of its text).
        overlap: what each segment repeats of the one before it.
    """

    __slots__ = ("_buffer", "_index", "_overlap", "_segment", "_tenant", "_text", "indexed")

    def __init__(
        self,
        index: FingerprintIndex,
        tenant: TenantId,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        overlap: int = OVERLAP_BYTES,
    ) -> None:
        if segment_bytes < 1 or overlap < 0:
            raise ValueError("segment_bytes must be at least 1 and overlap at least 0")
        self._index = index
        self._tenant = tenant
        self._segment = segment_bytes
        self._overlap = overlap
        self._buffer = bytearray()
        self._text: BodyText | None = None
        self.indexed = 0
        """Fingerprints indexed so far."""

    async def feed(self, chunk: bytes) -> None:
        """Add a chunk; decode and index full segments (off the event loop)."""
        self._buffer += chunk
        if len(self._buffer) > self._segment:
            data = bytes(self._buffer)
            self._buffer.clear()
            await self._run(self._stream().push, data)

    async def finish(self) -> None:
        """Index what is left (the whole body, if it was one segment)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._text is not None:
            await self._run(self._finish_stream, data)
        elif data:
            await self._run(self._add_body, data)

    def _stream(self) -> BodyText:
        if self._text is None:
            self._text = BodyText(self._add, self._segment, self._overlap)
        return self._text

    def _finish_stream(self, data: bytes) -> None:
        text = self._stream()
        if data:
            text.push(data)
        text.close()

    def _add_body(self, data: bytes) -> None:
        read_body(data, self._add, segment_bytes=self._segment, overlap=self._overlap)

    def _add(self, content: object) -> None:
        self.indexed += self._index.add(self._tenant, content)

    async def _run(self, step: Callable[[bytes], None], data: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, step, data)
