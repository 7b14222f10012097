"""The ingestion spool: request bodies made durable in group commits, indexed later.

Ingestion answers a request once its body is on disk, not once it is fingerprinted:
a spool writer (by default a C thread of the service,
:mod:`kairo_guard.ingest.spool_native`; else a process,
:mod:`kairo_guard.ingest.spool_main`, or a thread, :mod:`kairo_guard.store.spool_writer`,
both through :class:`~kairo_guard.store.spool_append.SegmentAppender`) appends each
sealed body to a segment file, and many requests share one ``write`` and one
``fdatasync`` (group commit); the pages it synced leave the page cache. The indexer
(:mod:`kairo_guard.detect.indexer`) reads segments, fingerprints bodies in batches and
records how far it got; a check at a shared sink waits until everything accepted
before it started is indexed (:func:`covered`).

On disk, a spool is a directory of segments ``seg-<ns>-<pid>.kgs``, each written by one
process, which holds a shared ``flock`` on it while it may still append; a segment
whose lock can be taken exclusively is finished (closed, or its writer died). A writer
makes a segment as ``<name>.new``, locks it and only then links it to its name, so no
segment is ever seen by its name before its lock is held (the indexer removes a finished
segment once indexed: one seen unlocked in that instant would have been removed with
the body about to go to it). A record
is a 9-byte header (payload length, CRC-32 of the payload, kind) and its payload; a
record is acknowledged only after the ``fdatasync`` that covers it, so a record cut
short or failing its CRC at the end of a finished segment was never acknowledged (a
torn tail). ``<segment>.pos`` holds the offset the indexer has committed up to;
indexing is at least once (a crash between the store's commit and the ``.pos`` write
indexes a batch again: fingerprints are idempotent, audit entries repeat).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from kairo_guard.core.exceptions import StoreError

SPOOL_DIR_NAME = "spool"
"""The spool's folder inside the state directory."""
SEGMENT_SUFFIX = ".kgs"
NEW_SUFFIX = ".new"
"""A segment being made: ``<segment>.new`` until its writer holds its lock."""
UNMADE_GRACE = 60.0
"""Seconds after which a ``.new`` file no writer locks is a dead writer's (removed)."""
POS_SUFFIX = ".pos"
LOCK_NAME = "indexer.lock"
KIND_BODY = 1
"""A body: tenant, seal (empty: index only) and the body's bytes."""
_HEADER = struct.Struct("<IIB")
_FIELD = struct.Struct("<H")
PAGE = os.sysconf("SC_PAGE_SIZE")
"""The page size (the page cache drops whole pages)."""
logger = logging.getLogger("kairo_guard.store.spool")


class SpoolRecord(NamedTuple):
    """One record read back from a segment."""

    end: int
    """Offset just past the record (where the indexer resumes)."""
    tenant: str
    seal: str
    meta: bytes
    """The request: ``METHOD path`` (empty for a websocket message)."""
    body: bytes


def encode_body(tenant: str, seal: str, body: bytes, meta: bytes = b"") -> bytes:
    """Frame a body record (header, tenant, seal, request, body); ``meta`` is cut at
    4,096 bytes."""
    return b"".join(body_parts(tenant, seal, body, meta))


def body_parts(tenant: str, seal: str, body: bytes, meta: bytes = b"") -> list[bytes]:
    """:func:`encode_body` as buffers to write in order: the framing, then ``body``
    itself (not copied; its checksum is computed without the interpreter lock when it
    is large)."""
    t, s, m = tenant.encode(), seal.encode("ascii"), meta[:4096]
    fields = b"".join((_FIELD.pack(len(t)), t, _FIELD.pack(len(s)), s, _FIELD.pack(len(m)), m))
    crc = zlib.crc32(body, zlib.crc32(fields))
    return [_HEADER.pack(len(fields) + len(body), crc, KIND_BODY) + fields, body]


def _decode(payload: bytes) -> tuple[str, str, bytes, bytes]:
    fields: list[bytes] = []
    at = 0
    for _ in range(3):
        (n,) = _FIELD.unpack_from(payload, at)
        if at + 2 + n > len(payload):
            raise struct.error("field past the record's end")
        fields.append(payload[at + 2 : at + 2 + n])
        at += 2 + n
    return fields[0].decode(), fields[1].decode("ascii"), fields[2], payload[at:]


class SegmentRead(NamedTuple):
    """What one pass over a segment found."""

    records: list[SpoolRecord]
    stop: int
    """Offset where reading stopped (the end of the last whole record)."""
    tail: bool
    """Reading stopped at a record cut short or failing its CRC (in a finished segment:
    a torn tail, never acknowledged; in a segment still written: a write in progress)."""


def read_segment(path: Path, start: int, limit: int) -> SegmentRead:
    """Read whole records from ``start``: about ``limit`` bytes of them, or one record."""
    records: list[SpoolRecord] = []
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(limit)
        _read_once(f.fileno(), start, len(data))
        eof = len(data) < limit
        at = 0
        while True:
            if at + _HEADER.size > len(data):
                return SegmentRead(records, start + at, eof and at < len(data))
            length, crc, kind = _HEADER.unpack_from(data, at)
            end = at + _HEADER.size + length
            if end > len(data):
                if not eof and records:
                    return SegmentRead(records, start + at, False)  # the rest next pass
                data += f.read(end - len(data))  # one record longer than ``limit``
                if end > len(data):
                    return SegmentRead(records, start + at, True)
            payload = data[at + _HEADER.size : end]
            if zlib.crc32(payload) != crc or kind != KIND_BODY:
                return SegmentRead(records, start + at, True)
            try:
                tenant, seal, meta, body = _decode(payload)
            except (UnicodeDecodeError, struct.error):
                return SegmentRead(records, start + at, True)
            records.append(SpoolRecord(start + end, tenant, seal, meta, body))
            at = end


def _read_once(fd: int, start: int, length: int) -> None:
    """Let the page cache drop the whole pages just read: each is read once (by the
    indexer). A page the writer may still append to (the last, partial one) stays."""
    end = start + length
    end -= end % PAGE
    if end > start:
        with contextlib.suppress(OSError):  # advice only
            os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)


def resync(path: Path, start: int) -> int | None:
    """The offset of the first whole, valid record after ``start`` (a record that failed
    its CRC there), or None: reading resumes past a damaged record instead of taking
    everything after it for a torn tail."""
    with open(path, "rb") as f:
        f.seek(start + 1)
        data = f.read()
    at = 7  # a kind byte has its length and CRC (8 bytes) before it
    while True:
        at = data.find(b"\x01", at + 1)  # the kind byte of a body record
        if at < 0:
            return None
        head = at - 8
        length, crc = struct.unpack_from("<II", data, head)
        end = at + 1 + length
        if end <= len(data) and zlib.crc32(data[at + 1 : end]) == crc:
            try:
                _decode(data[at + 1 : end])
            except (UnicodeDecodeError, struct.error):
                continue
            return start + 1 + head
    return None


def segments(directory: Path) -> list[Path]:
    """The spool's segments, oldest first (none when the spool does not exist yet).

    Raises:
        StoreError: the spool cannot be read.
    """
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SEGMENT_SUFFIX))
    except FileNotFoundError:
        return []
    except OSError as exc:  # not a directory, no permission, I/O error: say so
        raise StoreError(f"cannot read the spool {directory}: {exc}") from exc
    return [directory / n for n in names]


def indexed_offset(segment: Path) -> int:
    """How far the indexer has committed in ``segment`` (0 when it has not started)."""
    try:
        return int(segment.with_suffix(POS_SUFFIX).read_text() or 0)
    except FileNotFoundError:
        return 0


def set_indexed_offset(segment: Path, offset: int) -> None:
    """Record (atomically) that ``segment`` is indexed up to ``offset``."""
    tmp = segment.with_suffix(".pos-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, str(offset).encode())
    finally:
        os.close(fd)
    os.replace(tmp, segment.with_suffix(POS_SUFFIX))


def finished(segment: Path) -> bool:
    """True when no process may still append to ``segment`` (its writer's lock is free)."""
    try:
        fd = os.open(segment, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the lock, if taken
    return True


def sweep_unmade(directory: Path, *, grace: float = UNMADE_GRACE) -> int:
    """Remove what writers that died while making a segment left: ``<segment>.new``
    files older than ``grace`` seconds whose lock is free (empty: nothing is written to a
    segment before it has its name). Return how many."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(SEGMENT_SUFFIX + NEW_SUFFIX)]
    except OSError:
        return 0
    removed = 0
    for name in names:
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if time.time() - os.fstat(fd).st_mtime < grace:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()
            removed += 1
        except OSError:  # locked (being made), or gone already
            continue
        finally:
            os.close(fd)
    return removed


def remove_segment(segment: Path) -> None:
    """Delete a finished, fully indexed segment and its offset file."""
    for path in (segment, segment.with_suffix(POS_SUFFIX)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


Snapshot = dict[Path, int]
"""Segment -> its size when a check started."""


def snapshot(directory: Path) -> Snapshot:
    """Every segment's current size: what was accepted up to now."""
    sizes: Snapshot = {}
    for seg in segments(directory):
        with contextlib.suppress(FileNotFoundError):
            sizes[seg] = seg.stat().st_size
    return sizes


def covered(taken: Snapshot) -> bool:
    """True once every byte of ``taken`` is indexed (or its segment is gone)."""
    return all(indexed_offset(seg) >= size or not seg.exists() for seg, size in taken.items())


@dataclass(frozen=True)
class Backlog:
    """What is spooled and not yet indexed."""

    segments: int
    pending_bytes: int
    sizes: tuple[tuple[str, int], ...] = ()
    """Each segment's name and size (a segment that grew, or a new one: ingestion)."""
    oldest: tuple[str, int] | None = None
    """Where the oldest unindexed body starts: its segment's name and offset (None when
    everything is indexed)."""


def backlog(directory: Path) -> Backlog:
    """Measure the spool's backlog (one ``listdir`` and a ``stat`` per segment)."""
    count = pending = 0
    sizes = []
    oldest = None
    for seg in segments(directory):
        with contextlib.suppress(FileNotFoundError):
            size = seg.stat().st_size
            done = indexed_offset(seg)
            count += 1
            pending += max(0, size - done)
            sizes.append((seg.name, size))
            if oldest is None and size > done:
                oldest = (seg.name, done)
    return Backlog(count, pending, tuple(sizes), oldest)


@contextlib.contextmanager
def indexer_lock(directory: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the spool's indexer lock (one indexer at a time); yields False when
    ``wait`` is False and another process holds it."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)
