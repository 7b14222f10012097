"""Reading JSONL input safely: bounded lines, strict UTF-8 and JSON, never a crash.

Lines are read in blocks and split without ever holding more than one record of at most
``max_bytes`` in memory; a longer line is skipped as it streams past (only its size and
digest are kept), so a 50 MB line or an endless one cannot exhaust memory.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import orjson

BLOCK_SIZE = 1 << 20
_LONG_NUMBER = re.compile(rb"\d{16,}")


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is not a readable JSON record; ``rule`` names the problem."""

    rule: str
    reason: str
    digest: str


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line: its 1-based number, exact bytes (with the newline, if any)."""

    number: int
    raw: bytes


def iter_lines(stream: BinaryIO, max_bytes: int) -> Iterator[Line | tuple[int, BadLine]]:
    """Yield each non-blank line, or ``(number, BadLine)`` for one over ``max_bytes``."""
    number = 0
    pending = b""
    skipping: hashlib._Hash | None = None
    skipped = 0
    while True:
        block = stream.read(BLOCK_SIZE)
        if not block:
            break
        start = 0
        while True:
            end = block.find(b"\n", start)
            if end < 0:
                rest = block[start:]
                if skipping is not None:
                    skipping.update(rest)
                    skipped += len(rest)
                elif len(pending) + len(rest) > max_bytes:
                    skipping = hashlib.sha256(pending + rest)
                    skipped = len(pending) + len(rest)
                    pending = b""
                else:
                    pending += rest
                break
            piece = block[start : end + 1]
            start = end + 1
            number += 1
            if skipping is not None:
                skipping.update(piece)
                yield number, _too_large(skipped + len(piece), skipping.hexdigest(), max_bytes)
                skipping, skipped = None, 0
                continue
            raw = pending + piece if pending else piece
            pending = b""
            if len(raw) > max_bytes + 1:
                yield number, _too_large(len(raw), hashlib.sha256(raw).hexdigest(), max_bytes)
            elif raw.strip():
                yield Line(number, raw)
    if skipping is not None:
        yield number + 1, _too_large(skipped, skipping.hexdigest(), max_bytes)
    elif pending.strip():
        yield Line(number + 1, pending)


def _too_large(size: int, digest: str, max_bytes: int) -> BadLine:
    return BadLine(
        "input.too-large",
        f"record of {size} bytes is over the {max_bytes}-byte limit (limits.max_record_bytes)",
        digest,
    )


def parse_line(raw: bytes, *, exact_numbers: bool = False) -> object | BadLine:
    """Return the JSON value of a line, or a :class:`BadLine` saying why it has none.

    With ``exact_numbers``, a number that does not survive the round trip (an integer
    past 64 bits, a float with more digits than a double holds) is a bad line: sealing it
    would bind a digest to a value other than the one written.
    """
    try:
        value: object = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        digest = hashlib.sha256(raw).hexdigest()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return BadLine("input.invalid-utf8", f"not valid UTF-8 at byte {uexc.start}", digest)
        message = str(exc)
        if "recursion" in message.lower() or "depth" in message.lower():
            return BadLine("input.too-deep", "JSON nested deeper than 1024 levels", digest)
        return BadLine("input.malformed-json", f"malformed JSON: {message}", digest)
    if exact_numbers and _LONG_NUMBER.search(raw) is not None and not _numbers_exact(raw, value):
        return BadLine(
            "input.inexact-number",
            "a number exceeds 64-bit integer or double precision; store it as a string",
            hashlib.sha256(raw).hexdigest(),
        )
    return value


def _numbers_exact(raw: bytes, value: object) -> bool:
    try:
        exact = json.loads(raw, parse_float=_exact_float)
    except (ValueError, RecursionError):
        return False
    return bool(exact == value)


def _exact_float(text: str) -> float:
    number = float(text)
    if repr(number) != text and float(repr(number)) == number and len(text.lstrip("-")) > 17:
        raise ValueError("inexact float")
    return number
