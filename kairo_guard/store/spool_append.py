"""Appending to the spool: this process's open segment (:mod:`kairo_guard.store.spool`
has the format and the reading side)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from pathlib import Path

from kairo_guard.core.exceptions import StoreError
from kairo_guard.store.spool import NEW_SUFFIX, PAGE, SEGMENT_SUFFIX

_IOV_MAX = 1024
logger = logging.getLogger("kairo_guard.store.spool")


_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS)
"""What link() fails with on a file system without hard links."""


def _give_name(made: Path, path: Path) -> bool:
    """Give the segment ``made`` (``<path>.new``, locked) its name ``path``: link(), which
    never replaces a name, or, on a file system without hard links, rename() once no
    file has that name (none can: only the writer that made ``<path>.new``, under
    ``O_EXCL``, gives that name). True when renamed (``made`` is gone), False when
    linked (``made`` is still to remove)."""
    try:
        os.link(made, path)
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "segment name taken", str(path)) from exc
        os.rename(made, path)
        return True
    return False


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
            upto = synced - synced % PAGE
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
        # Made under another name and locked before it takes its own: the indexer takes
        # a segment whose lock is free for finished and removes it once indexed, so a
        # segment must never be seen by its name unlocked (its body would go to a
        # removed file: acknowledged, never indexed).
        new = path.with_name(path.name + NEW_SUFFIX)
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        renamed = False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            renamed = _give_name(new, path)
        except BaseException:
            os.close(fd)
            raise
        finally:
            if not renamed:
                with contextlib.suppress(OSError):
                    os.unlink(new)
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
