"""Reading JSONL input safely: bounded lines, strict UTF-8 and JSON, never a crash.

Lines are read in blocks and split without ever holding more than one record of at most
``max_bytes`` in memory; a longer line is skipped as it streams past (only its size and
digest are kept), so a 50 MB line or an endless one cannot exhaust memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import orjson

BLOCK_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is not a readable JSON record; ``rule`` names the problem."""

    rule: str
    reason: str
    digest: str


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line: its 1-based number and exact bytes, without the newline."""

    number: int
    raw: bytes


def iter_line_batches(stream: BinaryIO, max_bytes: int) -> Iterator[list[bytes | BadLine]]:
    """Yield the lines of each block read: every line without its newline (blank ones
    too, so callers can count), or a :class:`BadLine` in place of one longer than
    ``max_bytes``. Batches keep the per-line cost of a generator off hot loops."""
    parts: list[bytes] = []  # pieces of the line still being read
    size = 0
    skipping: hashlib._Hash | None = None  # digest of an over-long line streaming past
    while block := stream.read(BLOCK_SIZE):
        raw = block.split(b"\n")
        tail = raw.pop()
        lines: list[bytes | BadLine] = list(raw)
        if raw:
            first = raw[0]
            if skipping is not None:
                skipping.update(first)
                lines[0] = _too_large(size + len(first), skipping.hexdigest(), max_bytes)
                skipping = None
            elif parts:
                parts.append(first)
                lines[0] = b"".join(parts)
                parts = []
            size = 0
            if len(block) > max_bytes:  # only then can a whole line be over the limit
                lines = [_checked(line, max_bytes) for line in lines]
            elif isinstance(lines[0], bytes) and len(lines[0]) > max_bytes:
                lines[0] = _too_large_line(lines[0], max_bytes)
            yield lines
        if skipping is not None:
            skipping.update(tail)
            size += len(tail)
        elif size + len(tail) > max_bytes:
            skipping = hashlib.sha256(b"".join(parts))
            skipping.update(tail)
            parts = []
            size += len(tail)
        elif tail:
            parts.append(tail)
            size += len(tail)
    if skipping is not None:
        yield [_too_large(size, skipping.hexdigest(), max_bytes)]
    elif parts:
        yield [_checked(b"".join(parts), max_bytes)]


def _checked(line: bytes | BadLine, max_bytes: int) -> bytes | BadLine:
    if isinstance(line, bytes) and len(line) > max_bytes:
        return _too_large_line(line, max_bytes)
    return line


def iter_raw_lines(stream: BinaryIO, max_bytes: int) -> Iterator[bytes | BadLine]:
    """Yield every line, one at a time (see :func:`iter_line_batches`)."""
    for batch in iter_line_batches(stream, max_bytes):
        yield from batch


def iter_lines(stream: BinaryIO, max_bytes: int) -> Iterator[Line | tuple[int, BadLine]]:
    """Yield each non-blank line, or ``(number, BadLine)`` for one over ``max_bytes``."""
    for number, raw in enumerate(iter_raw_lines(stream, max_bytes), start=1):
        if isinstance(raw, BadLine):
            yield number, raw
        elif raw.strip():
            yield Line(number, raw)


def _too_large_line(line: bytes, max_bytes: int) -> BadLine:
    return _too_large(len(line), hashlib.sha256(line).hexdigest(), max_bytes)


def _too_large(size: int, digest: str, max_bytes: int) -> BadLine:
    return BadLine(
        "input.too-large",
        f"record of {size} bytes is over the {max_bytes}-byte limit (limits.max_record_bytes)",
        digest,
    )


def parse_line(raw: bytes, *, exact_numbers: bool = False) -> object | BadLine:
    """Return the JSON value of a line, or a :class:`BadLine` saying why it has none.

    With ``exact_numbers``, an integer past 64 bits (which would be rounded to a float)
    makes the line bad: sealing it would bind a digest to a value other than the one
    written.
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
    if exact_numbers and has_inexact_number(raw, value):
        return BadLine(
            "input.inexact-number",
            "an integer exceeds 64 bits and would be rounded; store it as a string",
            hashlib.sha256(raw).hexdigest(),
        )
    return value


_BIG = 9.2e18  # orjson parses integers past 64 bits as floats at least this large


def may_be_rounded(value: object) -> bool:
    """True if ``value`` holds a float large enough to be a rounded 64-bit-plus integer."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if item >= _BIG or item <= -_BIG:  # type: ignore[operator]
                return True
        elif kind is dict:
            stack.extend(item.values())  # type: ignore[attr-defined]
        elif kind is list:
            stack.extend(item)  # type: ignore[arg-type]
    return False


def has_inexact_number(raw: bytes, value: object) -> bool:
    """True if parsing ``raw`` rounded an integer past 64 bits into ``value``'s float.

    Cheap unless ``value`` holds a float of 9.2e18 or more, where the line is parsed
    again exactly to compare: a seal must never vouch for digits it did not see.
    """
    if not may_be_rounded(value):
        return False
    try:
        exact = json.loads(raw)
        return orjson.dumps(exact, option=orjson.OPT_SORT_KEYS) != orjson.dumps(
            value, option=orjson.OPT_SORT_KEYS
        )
    except (ValueError, RecursionError, TypeError, orjson.JSONEncodeError):
        return True
