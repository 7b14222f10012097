"""JSONL records through a sink check: the scan engine and the file helpers.

:func:`scan_stream` is the hot path of ``kairo-guard scan`` (and what the benchmarks
measure); :func:`atomic_output`, :func:`progress` and :func:`open_input` are shared by
the commands that read or write JSONL files (scan, label, telemetry).
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import IO, Any, BinaryIO

import click
import orjson

from kairo_guard.cli.common import EXIT_USAGE, Exit
from kairo_guard.core.content import sealed_line, split_sealed_line
from kairo_guard.core.jsonl import (
    BadLine,
    has_inexact_number,
    iter_line_batches,
    may_be_rounded,
    parse_line,
)
from kairo_guard.core.policy import Decision
from kairo_guard.core.report import CheckReport
from kairo_guard.core.shard_lines import may_be_member
from kairo_guard.core.types import SEAL_FIELD, Mode, Outcome
from kairo_guard.enforce.check import SinkCheck
from kairo_guard.enforce.check_batch import RecordParts

_SORT = orjson.OPT_SORT_KEYS
_UNPARSED = BadLine("input.malformed-json", "malformed JSON", "")
_INEXACT = Decision(
    Outcome.BLOCK,
    "input.inexact-number",
    "an integer exceeds 64 bits: the seal cannot vouch for digits lost in parsing",
)
SCAN_BATCH = 1024
"""Lines a scan at a shared sink decides at once (one fingerprint lookup for them)."""
SUMMARY_VIOLATIONS = 5
"""How many refused records a command prints; the rest are in its ``--report``."""


@contextmanager
def atomic_output(path: Path | None) -> Iterator[tuple[BinaryIO | None, list[bool]]]:
    """Yield a file that replaces ``path`` only if the caller sets ``commit[0]``."""
    if path is None:
        yield None, [False]
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    commit = [False]
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            yield fh, commit
            fh.flush()
            os.fsync(fh.fileno())
        if commit[0]:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def progress(stream: BinaryIO, label: str) -> Iterator[Any]:
    """A progress bar over the input's bytes, on a terminal only."""
    size = os.fstat(stream.fileno()).st_size if stream.seekable() else 0
    if not (sys.stderr.isatty() and size):
        yield None
        return
    with click.progressbar(length=size, label=label, file=sys.stderr) as bar:
        yield bar


def open_input(path: Path) -> BinaryIO:
    """Open a JSONL input for reading, or exit 2 with a message that names it."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise Exit(EXIT_USAGE, f"error: cannot read {path}: {exc.strerror}") from exc


def scan_stream(
    run: SinkCheck, stream: BinaryIO, out: IO[bytes] | None, max_bytes: int, bar: Any = None
) -> CheckReport:
    """Decide every line of ``stream``; write passing lines (as read) to ``out``.

    The hot path of ``scan``. A line in the canonical sealed form (what ``label`` and
    ``Guard.label_record`` write) is digested straight from its bytes, without a JSON
    parse; any other line is parsed and canonically re-encoded. Then one seal
    verification and a cached policy lookup.

    The objects alive when the scan starts (modules, the guard, caches) are frozen out
    of the garbage collector's view for its duration: a scan allocates steadily, and
    every full collection would otherwise walk them all again.
    """
    gc.freeze()
    try:
        if run.batches:  # a shared sink: the fingerprint net looks up lines in batches
            return _scan_batches(run, stream, out, max_bytes, bar)
        return _scan_lines(run, stream, out, max_bytes, bar)
    finally:
        gc.unfreeze()


def _scan_lines(
    run: SinkCheck, stream: BinaryIO, out: IO[bytes] | None, max_bytes: int, bar: Any
) -> CheckReport:
    observe = run.mode is Mode.OBSERVE
    decide, allow, write = run.decide_parts, Outcome.ALLOW, None if out is None else out.write
    split, sha256 = split_sealed_line, hashlib.sha256
    done = scanned = 0
    number = -1
    for raw in chain.from_iterable(iter_line_batches(stream, max_bytes)):
        number += 1
        if isinstance(raw, BadLine):
            run.block_unreadable(raw.rule, raw.reason, raw.digest, number)
            continue
        scanned += len(raw) + 1
        parts = split(raw)
        if parts is not None:
            body, seal = parts
            digest = sha256(body).hexdigest()
            # the digest must be the seal's own, or the bytes are not canonical
            if seal.find(digest, 4, 120) < 0:
                parts = None
        if parts is not None:
            # the bytes are parsed only if a content check needs them (shared sinks)
            decision = decide(body, seal, digest, number, json_bytes=True)
        else:
            parsed = _decide_parsed(run, raw, number)
            if parsed is None:
                continue  # a blank line is not a record
            decision, canonical = parsed
            if canonical is not None and decision.outcome is allow and not observe:
                # write what was verified, not the line as read: a line with duplicate
                # keys parses to one value but may carry another to other readers
                # (observe mode changes nothing: it passes every line as it came)
                raw = canonical
        if write is not None and (decision.outcome is allow or observe):
            write(raw)
            write(b"\n")
        if bar is not None:
            done += len(raw) + 1
            if done > 1 << 22:
                bar.update(done)
                done = 0
    run.bytes_scanned += scanned
    return run.finish()


def _decide_parsed(run: SinkCheck, raw: bytes, number: int) -> tuple[Decision, bytes | None] | None:
    """Decide a line by parsing it; return the decision and, for a sealed object, its
    canonical line (None for a blank line)."""
    parsed = _parse(raw, number)
    if parsed is None:
        return None
    if isinstance(parsed, BadLine):
        return run.block_unreadable(parsed.rule, parsed.reason, parsed.digest, number), None
    (value, seal, digest, _, confirm, _), canonical = parsed
    return run.decide_parts(value, seal, digest, number, confirm), canonical


def _parse(raw: bytes, number: int) -> tuple[RecordParts, bytes | None] | BadLine | None:
    """Parse a line into a record's parts and, for a sealed object, its canonical line;
    a :class:`BadLine` for one that cannot be parsed, None for a blank one."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if not raw.strip():
            return None
        bad = parse_line(raw)
        return bad if isinstance(bad, BadLine) else _UNPARSED
    if type(value) is not dict:
        return RecordParts(value, None, None, number), None
    seal = value.pop(SEAL_FIELD, None)
    try:
        canonical: bytes | None = orjson.dumps(value, option=_SORT)
    except orjson.JSONEncodeError:
        canonical = None
    digest = None if canonical is None else hashlib.sha256(canonical).hexdigest()
    confirm = _exactness(raw, value) if may_be_rounded(value) else None
    parts = RecordParts(value, seal, digest, number, confirm)
    if canonical is None or not isinstance(seal, str) or not seal.isascii():
        return parts, None  # (a seal is ASCII: this one is refused when it is decided)
    return parts, sealed_line(value, seal).rstrip(b"\n")


def _scan_batches(
    run: SinkCheck, stream: BinaryIO, out: IO[bytes] | None, max_bytes: int, bar: Any
) -> CheckReport:
    """:func:`_scan_lines` for a shared sink: lines are decided :data:`SCAN_BATCH` at a
    time (one fingerprint lookup for them), then written in order; runs of clean lines
    of vetted shards are decided at once (:meth:`SinkCheck.take_vetted`)."""
    observe = run.mode is Mode.OBSERVE
    write = None if out is None else out.write
    pending: list[tuple[RecordParts, bytes, bytes | None]] = []

    def flush() -> None:
        if not pending:
            return
        decisions = run.decide_batch([parts for parts, _, _ in pending])
        if write is not None:
            lines = [
                # the verified canonical line, not the line as read (see _scan_lines)
                canonical if canonical is not None and not observe else raw
                for (_, raw, canonical), decision in zip(pending, decisions, strict=True)
                if decision.outcome is Outcome.ALLOW or observe
            ]
            if lines:
                lines.append(b"")
                write(b"\n".join(lines))
        pending.clear()

    number, shown = 0, 0  # the batch's first line; bytes shown on the progress bar
    for lines in iter_line_batches(stream, max_bytes):
        i, size = 0, len(lines)
        while i < size:
            raw, at = lines[i], number + i
            if not pending or (type(raw) is bytes and may_be_member(raw)):
                flush()  # in order: what came before is decided and written first
                end = run.take_vetted(lines, i, at)
                if end > i:  # canonical lines of vetted shards: written as read
                    if write is not None:
                        write(b"\n".join(lines[i:end]) + b"\n")  # type: ignore[arg-type]
                    i = end
                    continue
            i += 1
            if isinstance(raw, BadLine):
                flush()
                run.block_unreadable(raw.rule, raw.reason, raw.digest, at)
                continue
            parsed = _parse_or_split(raw, at)
            if isinstance(parsed, BadLine):  # JSON that does not parse: passes only to observe
                flush()
                run.block_unreadable(parsed.rule, parsed.reason, parsed.digest, at)
                if write is not None and observe:
                    write(raw + b"\n")
            elif parsed is not None:
                pending.append((parsed[0], raw, parsed[1]))
                if len(pending) >= SCAN_BATCH:
                    flush()
        number += size
        run.bytes_scanned += _read_size(lines)
        if bar is not None:
            bar.update(run.bytes_scanned - shown)
            shown = run.bytes_scanned
    flush()
    return run.finish()


def _read_size(lines: list[bytes | BadLine]) -> int:
    """Bytes of the lines read, each with its newline (a line too long to read: none)."""
    try:
        return sum(map(len, lines)) + len(lines)  # type: ignore[arg-type]
    except TypeError:  # a BadLine among them
        return sum(len(line) + 1 for line in lines if type(line) is bytes)


def _parse_or_split(raw: bytes, number: int) -> tuple[RecordParts, bytes | None] | BadLine | None:
    parts = split_sealed_line(raw)
    if parts is not None:
        body, seal = parts
        digest = hashlib.sha256(body).hexdigest()
        if seal.find(digest, 4, 120) >= 0:  # the seal's own digest: canonical bytes
            return RecordParts(body, seal, digest, number, None, json_bytes=True), None
    return _parse(raw, number)


def _exactness(raw: bytes, value: object) -> Callable[[], Decision | None]:
    return lambda: _INEXACT if has_inexact_number(raw, value) else None
