"""The ingestion spool: request bodies made durable in group commits, indexed later.

Ingestion answers a request once its body is on disk, not once it is fingerprinted:
a spool writer (a process of the service by default, :mod:`kairo_guard.ingest.spool_main`;
or a thread, :mod:`kairo_guard.store.spool_writer`) appends each sealed body to a segment
file through :class:`SegmentAppender`, and many requests share one ``write`` and one
``fdatasync`` (group commit). The
indexer (:mod:`kairo_guard.detect.indexer`) reads segments, fingerprints bodies in
batches and records how far it got; a check at a shared sink waits until everything
accepted before it started is indexed (:func:`covered`).

On disk, a spool is a directory of segments ``seg-<ns>-<pid>.kgs``, each written by one
process, which holds a shared ``flock`` on it while it may still append; a segment
whose lock can be taken exclusively is finished (closed, or its writer died). A record
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
import threading
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
POS_SUFFIX = ".pos"
LOCK_NAME = "indexer.lock"
KIND_BODY = 1
"""A body: tenant, seal (empty: index only) and the body's bytes."""
_HEADER = struct.Struct("<IIB")
_FIELD = struct.Struct("<H")
_IOV_MAX = 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")
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
    end -= end % _PAGE
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


def backlog(directory: Path) -> Backlog:
    """Measure the spool's backlog (one ``listdir`` and a ``stat`` per segment)."""
    count = pending = 0
    sizes = []
    for seg in segments(directory):
        with contextlib.suppress(FileNotFoundError):
            size = seg.stat().st_size
            left = size - indexed_offset(seg)
            count += 1
            pending += max(0, left)
            sizes.append((seg.name, size))
    return Backlog(count, pending, tuple(sizes))


class SegmentAppender:
    """This process's open segment: appends groups of records, each made durable with
    one ``fdatasync``; a new segment past ``segment_bytes`` or after a failed write.

    Args:
        directory: the spool directory (exists).
        segment_bytes: a segment is closed and a new one opened past this size.
        sync: ``fdatasync`` each group (False only for tests of what is not durable).
    """

    def __init__(self, directory: Path, *, segment_bytes: int = 64 << 20, sync: bool = True):
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"cannot create the spool {directory}: {exc}") from exc
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._sync = sync
        self._lock = threading.Lock()
        self._fd = -1
        self._size = 0
        self._dropped = 0
        self._segment = 0
        self._retired: list[int] = []

    def append(self, records: list[bytes]) -> str | None:
        """Write ``records`` (whole records, each one buffer or several in order) and
        make them durable; return None, or why they are not (then the segment is
        closed: a torn record ends it, the next starts clean)."""
        error, _ = self.write(records)
        return error if error is not None else self.sync()[0]

    def write(self, records: list[bytes]) -> tuple[str | None, int]:
        """Write ``records`` without waiting for the disk (:meth:`sync` makes them
        durable; it may run in another thread); return (None, or why they were not
        written, and the number of the segment they went to)."""
        if not records:  # no segment is made for nothing
            return None, self._segment
        with self._lock:  # a segment is never retired or closed while being written
            try:
                if self._fd < 0 or self._size >= self._segment_bytes:
                    self._open()
                for at in range(0, len(records), _IOV_MAX):
                    self._write(records[at : at + _IOV_MAX])
            except OSError as exc:
                logger.error("cannot write the spool: %s", exc)
                self._retire()
                return f"cannot write the spool: {exc}", self._segment
            return None, self._segment

    def sync(self) -> tuple[str | None, int]:
        """Make everything written before the call durable (``fdatasync`` of each
        segment written since the last sync); return (None, or why not, and the number
        of the newest segment it covers). After a failure the segment is ended: what
        went to it is never reported durable."""
        with self._lock:
            retired, self._retired = self._retired, []
            fds = [*retired, self._fd] if self._fd >= 0 else retired
            covers = self._segment
            current, synced = self._fd, self._size
        error = None
        try:
            if self._sync:
                for fd in fds:
                    os.fdatasync(fd)
                    self._drop(fd, None if fd != current else synced)
        except OSError as exc:
            error = f"cannot sync the spool: {exc}"
            logger.error("%s", error)
            with self._lock:
                self._retire()
        finally:
            for fd in retired:
                with contextlib.suppress(OSError):
                    os.close(fd)
        return error, covers

    def _drop(self, fd: int, synced: int | None) -> None:
        """Let the page cache drop the synced pages of ``fd`` (all of a retired
        segment; the whole pages before ``synced`` of the open one): nothing here reads
        them again, and a spool kept in the page cache makes every write take fresh
        pages, which costs several times the write (see the native writer)."""
        start, upto = 0, 0  # (0, 0): the whole file
        if synced is not None:
            upto = synced - synced % _PAGE
            with self._lock:
                if fd != self._fd or upto <= self._dropped:
                    return
                start, self._dropped = self._dropped, upto
        with contextlib.suppress(OSError):  # advice only: the data is durable either way
            os.posix_fadvise(fd, start, upto - start, os.POSIX_FADV_DONTNEED)

    def _write(self, records: list[bytes]) -> None:
        total = sum(len(r) for r in records)
        written = os.writev(self._fd, records)
        self._size += written
        if written < total:  # short write: the rest one buffer at a time
            rest = memoryview(b"".join(records))[written:]
            while rest:
                n = os.write(self._fd, rest)
                self._size += n
                rest = rest[n:]

    def _retire(self) -> None:  # (under the lock) the next sync syncs and closes it
        if self._fd >= 0:
            self._retired.append(self._fd)
            self._fd = -1

    def _open(self) -> None:  # (under the lock)
        self._retire()
        path = self.directory / f"seg-{time.time_ns():020d}-{os.getpid()}{SEGMENT_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new name itself is durable
        finally:
            os.close(dir_fd)
        self._fd, self._size, self._dropped = fd, 0, 0
        self._segment += 1

    def close(self) -> None:
        """Close the segment (it is then finished: the indexer may remove it), and any
        ended one not synced since."""
        with self._lock:
            self._retire()
            retired, self._retired = self._retired, []
        for fd in retired:
            with contextlib.suppress(OSError):
                os.close(fd)


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
