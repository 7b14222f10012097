"""The audit log's byte format, its signed head, and the checks on both.

:func:`check_tail` is the writer's cheap check of the file's end against the head;
:func:`verify_audit` streams the whole log for auditors. A log line is
``{"seq":N,"ts":T,"prev":"<64 hex>",...fields...,"hash":"<64 hex>"}\\n`` where
``hash`` is SHA-256 over the line's exact bytes without the ``hash`` member. That member
always comes last and has a fixed length, so the hashed body is recovered by cutting a
75-byte suffix: nothing is ever re-serialised.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import orjson

from kairo_guard.audit.head import HEAD_NAME, SignedHead, decode_head
from kairo_guard.core.exceptions import AuditError, AuditIntegrityError

LOG_NAME = "audit.jsonl"
TORN_PREFIX = "audit.torn."
GENESIS = "0" * 64
"""The ``prev`` of entry 0."""
RESERVED_KEYS = frozenset({"seq", "ts", "prev", "hash"})
TORN_EVENT = "torn_tail_recovered"

_HASH_OPEN = b',"hash":"'
_SUFFIX_LEN = len(_HASH_OPEN) + 64 + 2
_BLOCK = 64 * 1024
_MAX_TAIL = 16 * 1024 * 1024
_NUMBER = (int, float)
_MOVED = "entry deleted, inserted or reordered?"


def parse_entry(line: bytes) -> tuple[dict[str, object], str]:
    """Check one line's self-hash and return its members (without ``hash``) and hash.

    Args:
        line: one line of the log without its newline.

    Raises:
        ValueError: in plain words, if the line is not an intact entry.
    """
    if line[-_SUFFIX_LEN:-66] != _HASH_OPEN or line[-2:] != b'"}':
        raise ValueError('it does not end with a well-formed "hash" member')
    body = line[:-_SUFFIX_LEN] + b"}"
    digest = hashlib.sha256(body).hexdigest()
    if digest.encode() != line[-66:-2]:  # a hex digest: so the claim is well-formed too
        raise ValueError("its hash does not match its content (entry edited?)")
    try:
        entry = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError("it is not valid JSON") from exc
    if type(entry) is not dict or "hash" in entry:
        raise ValueError("it is not a JSON object with a single hash member")
    seq = entry.get("seq")
    if type(seq) is not int or seq < 0:
        raise ValueError("seq is not a non-negative integer")
    if type(entry.get("ts")) not in _NUMBER:
        raise ValueError("ts is not a number")
    return entry, digest


def _read_tail(fd: int, size: int) -> tuple[bytes | None, int]:
    """Return the last complete line (no newline) and the offset just after it.

    Reads backwards in blocks, never the whole file. Bytes after the offset are a torn
    fragment; a file without any newline has no complete line and offset 0.
    """
    buf, pos = b"", size
    while pos > 0 and size - pos <= _MAX_TAIL:
        start = max(0, pos - _BLOCK)
        buf, pos = os.pread(fd, pos - start, start) + buf, start
        end = buf.rfind(b"\n")
        if end >= 0 and (pos == 0 or buf.rfind(b"\n", 0, end) >= 0):
            return buf[buf.rfind(b"\n", 0, end) + 1 : end], pos + end + 1
    if pos > 0:
        raise AuditIntegrityError(f"the last line of {LOG_NAME} exceeds {_MAX_TAIL} bytes")
    return None, 0


@dataclass(frozen=True)
class Tail:
    """Where the chain in the log file ends; bytes from ``end`` to ``size`` are torn."""

    size: int
    end: int
    count: int
    last_hash: str
    head: SignedHead | None


def _read_head(directory: Path, keys: Mapping[str, bytes]) -> SignedHead | None:
    raw = _read_optional(directory / HEAD_NAME)
    if raw is None:
        return None
    try:
        head = decode_head(raw)
    except ValueError as exc:
        raise AuditIntegrityError(str(exc)) from exc
    key = keys.get(head.key_id)
    if key is None:  # nothing to check it with: a head anyone could have written
        raise AuditIntegrityError(
            f"{HEAD_NAME} is signed with key id {head.key_id!r}, which this writer does not "
            "hold: it will not continue a log it cannot verify"
        )
    if not head.mac_ok(key):
        raise AuditIntegrityError(f"{HEAD_NAME}: mac does not verify (forged?)")
    return head


def check_tail(fd: int, directory: Path, keys: Mapping[str, bytes]) -> Tail:
    """Check the end of the open log ``fd`` against its head, cheaply; caller locks.

    ``keys``: the head keys the writer holds, by key id (older ones after a rotation).

    Raises:
        AuditIntegrityError: if the head is missing, forged, signed with a key id not in
            ``keys``, or vouches for more entries than the log holds (truncated, or torn
            inside the signed range).
        OSError: if the files cannot be read.
    """
    size = os.fstat(fd).st_size
    line, end = _read_tail(fd, size)
    count, last_hash = 0, GENESIS
    if line is not None:
        try:
            entry, last_hash = parse_entry(line)
        except ValueError as exc:
            raise AuditIntegrityError(f"the last line of {LOG_NAME}: {exc}") from exc
        count = cast(int, entry["seq"]) + 1  # parse_entry checked it
    head = _read_head(directory, keys)
    if head is None and size:
        raise AuditIntegrityError(f"{HEAD_NAME} is missing but {LOG_NAME} is not empty")
    if head is not None and head.count > count:
        where = "complete lines (the rest is torn)" if end < size else "entries"
        raise AuditIntegrityError(
            f"{HEAD_NAME} signs {head.count} entries but {LOG_NAME} holds {count} {where}: "
            "it was truncated inside its signed range",
            line=count + 1,
        )
    if head is not None and head.count == count and count and head.hash != last_hash:
        raise AuditIntegrityError(f"line {count} differs from {HEAD_NAME}", line=count)
    return Tail(size, end, count, last_hash, head)


class AnchorLike(Protocol):
    """What :func:`verify_audit` reads of an anchor (:class:`~kairo_guard.audit.anchor.Anchor`)."""

    @property
    def count(self) -> int: ...
    @property
    def hash(self) -> str: ...


@dataclass(frozen=True)
class AuditVerification:
    """What :func:`verify_audit` found.

    ``entries`` counts the intact, chained entries read before any problem;
    ``signed_entries`` those of them covered by a head whose MAC verified.
    ``first_bad_line`` is 1-based; ``problem`` says what is wrong in plain words.
    """

    ok: bool
    entries: int
    signed_entries: int
    first_bad_line: int | None
    problem: str | None
    warnings: tuple[str, ...]


@dataclass
class _Scan:
    """What one pass over the log found."""

    entries: int = 0
    hash_at_count: str | None = None
    hash_at_anchor: str | None = None
    bad_line: int | None = None
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)


def _scan(log: BinaryIO, size: int, count: int, anchored: int = -1) -> _Scan:
    """Check each line up to byte ``size`` (a snapshot), streaming; stop at a problem."""
    scan, prev, done = _Scan(), GENESIS, 0
    for lineno, raw in enumerate(log, start=1):
        done += len(raw)
        if done > size:  # written after the snapshot
            raw = raw[: size - done]
            if not raw:
                break
        scan.bad_line = lineno
        if raw[-1:] != b"\n":
            scan.problem = f"torn last line ({len(raw)} bytes, no newline): a writer crashed"
            break
        try:
            entry, digest = parse_entry(raw[:-1])
        except ValueError as exc:
            scan.problem = f"not an intact audit entry: {exc}"
            break
        if entry["seq"] != lineno - 1:
            scan.problem = f"seq is {entry['seq']}, expected {lineno - 1} ({_MOVED})"
            break
        if entry.get("prev") != prev:
            scan.problem = f"prev does not match the hash of line {lineno - 1} ({_MOVED})"
            break
        if entry.get("event") == TORN_EVENT:
            scan.warnings.append(
                f"line {lineno}: the writer moved a torn tail of {entry.get('bytes')} bytes "
                f"(sha256 {entry.get('sha256')}) aside to {TORN_PREFIX}* and recovered"
            )
        prev, scan.entries, scan.bad_line = digest, lineno, None
        if lineno == count:
            scan.hash_at_count = digest
        if lineno == anchored:
            scan.hash_at_anchor = digest
    if scan.problem is not None:
        scan.problem = f"line {scan.bad_line}: {scan.problem}"
    return scan


def _read_optional(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _snapshot(directory: Path) -> tuple[BinaryIO | None, bytes | None, int]:
    """Open the log and read the head and the log's size as one consistent pair."""
    try:
        log = (directory / LOG_NAME).open("rb")
    except FileNotFoundError:
        return None, _read_optional(directory / HEAD_NAME), 0
    try:
        fcntl.flock(log.fileno(), fcntl.LOCK_SH)  # no writer between the two reads
        head = _read_optional(directory / HEAD_NAME)
        size = log.seek(0, os.SEEK_END)
        fcntl.flock(log.fileno(), fcntl.LOCK_UN)
        log.seek(0)
    except OSError:
        log.close()
        raise
    return log, head, size


def _check_head(
    raw: bytes | None, head_keys: Mapping[str, bytes], scan: _Scan
) -> tuple[int, str | None, int | None]:
    """Return (signed entries, problem, first bad line) for the head against the scan."""
    if raw is None:
        if scan.entries:
            return 0, f"audit.head is missing but the log holds {scan.entries} entries", None
        return 0, None, None
    try:
        head = decode_head(raw)
    except ValueError as exc:
        return 0, str(exc), None
    key = head_keys.get(head.key_id)
    if key is None:
        return 0, f"audit.head is signed with unknown key id {head.key_id!r}", None
    if not head.mac_ok(key):
        return 0, f"audit.head: mac does not verify with key {head.key_id!r} (forged?)", None
    if head.count > scan.entries:
        return (
            0,
            (
                f"audit.head signs {head.count} entries but the log holds {scan.entries} "
                "(tail truncated?)"
            ),
            scan.entries + 1,
        )
    if head.count == 0 and head.hash != GENESIS:
        return 0, "audit.head signs 0 entries but names a hash", None
    if head.count and head.hash != scan.hash_at_count:
        return (
            0,
            (f"line {head.count}: hash differs from the one in audit.head (entries rewritten?)"),
            head.count,
        )
    return head.count, None, None


def verify_audit(
    directory: Path, head_keys: Mapping[str, bytes], anchor: AnchorLike | None = None
) -> AuditVerification:
    """Check every entry of the audit log in ``directory`` and its signed head.

    Streams the log (it may be gigabytes). Entries appended after the head was read are
    not checked; entries the head does not yet cover are a warning, not a failure.

    Args:
        directory: the audit directory holding ``audit.jsonl`` and ``audit.head``.
        head_keys: head MAC keys by key id.
        anchor: the head as recorded outside the log directory
            (:mod:`kairo_guard.audit.anchor`); a log behind it fails.

    Returns:
        The outcome; ``ok`` is False at the first problem, which it names.

    Raises:
        AuditError: if the files exist but cannot be read.
    """
    try:
        log, head_raw, size = _snapshot(directory)
    except OSError as exc:
        raise AuditError(f"cannot read the audit log in {directory}: {exc}") from exc
    try:
        count = decode_head(head_raw).count if head_raw is not None else -1
    except ValueError:
        count = -1  # reported by _check_head
    scan = _Scan()
    if log is not None:
        with log:
            scan = _scan(log, size, count, anchor.count if anchor is not None else -1)
    signed, head_problem, head_bad_line = _check_head(head_raw, head_keys, scan)
    problem = scan.problem or head_problem
    if problem is None and anchor is not None and anchor.count:
        if scan.entries < anchor.count:
            problem = (f"the log holds {scan.entries} entries but its anchor outside the log "
                       f"directory records {anchor.count}: rolled back or deleted")  # fmt: skip
        elif scan.hash_at_anchor != anchor.hash:
            problem = (f"line {anchor.count} is not the entry its anchor outside the log "
                       "directory records: the log was replaced or rewritten")  # fmt: skip
    bad_line = scan.bad_line if scan.problem else head_bad_line
    warnings = scan.warnings
    if problem is None and scan.entries > signed:
        warnings.append(
            f"lines {signed + 1}-{scan.entries} ({scan.entries - signed} entries) are not yet "
            "covered by the signed head (written after its last update, e.g. a crash)"
        )
    return AuditVerification(
        ok=problem is None,
        entries=scan.entries,
        signed_entries=signed,
        first_bad_line=bad_line,
        problem=problem,
        warnings=tuple(warnings),
    )
