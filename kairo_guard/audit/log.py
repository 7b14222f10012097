"""An append-only, hash-chained audit log of guard decisions: digests, never content.

Entries are buffered by :meth:`AuditLog.append` and written in batches. ``seq``, ``ts``
and ``prev`` are assigned at flush time under an exclusive ``flock`` on the log, so any
number of processes may share one directory. After every batch the log is fsync'd and
``audit.head``, an HMAC-signed count and last hash, is replaced atomically, which makes
truncating the tail detectable (like Certificate Transparency's signed tree head).
The format and the verifier live in :mod:`kairo_guard.audit.verify`.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import orjson

from kairo_guard.audit._io import entry_members as _mid
from kairo_guard.audit._io import flocked as _flocked
from kairo_guard.audit._io import move_aside
from kairo_guard.audit._io import write_all as _write_all
from kairo_guard.audit.anchor import AuditAnchor
from kairo_guard.audit.head import HEAD_NAME, encode_head
from kairo_guard.audit.verify import (
    GENESIS,
    LOG_NAME,
    TORN_EVENT,
    AuditVerification,
    Tail,
    check_tail,
    verify_audit,
)
from kairo_guard.core.anchor import Anchor
from kairo_guard.core.exceptions import AuditError, ConfigError
from kairo_guard.core.types import JSONValue

__all__ = ["AuditLog", "AuditVerification", "JSONValue", "verify_audit"]

_LOG = logging.getLogger(__name__)
_BACKLOG_BATCHES = 4


class _Writer:
    """The state and I/O of an :class:`AuditLog`; holds no reference back to it."""

    def __init__(
        self,
        directory: Path,
        key: bytes,
        key_id: str,
        batch_size: int,
        interval: float,
        clock: Callable[[], float],
        keys: Mapping[str, bytes],
        anchor: AuditAnchor | None,
    ) -> None:
        self.dir, self.key, self.key_id, self.clock = directory, key, key_id, clock
        self.keys, self.anchor = {**keys, key_id: key}, anchor
        self.batch_size, self.interval = batch_size, interval
        self.lock = threading.Lock()  # guards buffer, error, closed
        self.io_lock = threading.Lock()  # one flush at a time in this process
        self.buffer: list[bytes] = []
        self.error: BaseException | None = None
        self.closed = False
        self.size, self.count, self.last_hash = -1, 0, GENESIS  # -1: not read yet
        self.head_stale = False
        self.fd = self.dir_fd = -1
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self.fd = os.open(directory / LOG_NAME, flags, 0o600)
            with _flocked(self.fd, fcntl.LOCK_SH):
                self.inspect()  # fail closed at open, not at the first decision
                self.check_anchor()
        except BaseException as exc:
            self.release()
            if isinstance(exc, OSError):
                raise AuditError(f"cannot open the audit log in {directory}: {exc}") from exc
            raise
        self.wake, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.run, name="kairo-guard-audit", daemon=True)
        self.thread.start()

    def release(self) -> None:
        fds, self.fd, self.dir_fd = (self.fd, self.dir_fd), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def append(self, mid: bytes) -> None:
        with self.lock:
            if self.closed or self.error is not None:
                self.raise_pending()
            if len(self.buffer) >= self.batch_size * _BACKLOG_BATCHES:
                raise AuditError(f"{len(self.buffer)} audit entries are waiting to be written")
            self.buffer.append(mid)
            n = len(self.buffer)
            if n == 1:
                self.wake.set()
        if n >= self.batch_size:
            self.flush()

    def raise_pending(self) -> None:
        """Raise (once) what the background flusher failed with; caller holds ``lock``."""
        if self.closed:
            raise AuditError("the audit log is closed")
        error, self.error = self.error, None
        if isinstance(error, AuditError):
            raise error
        if error is not None:
            raise AuditError(f"the background audit flush failed: {error!r}") from error

    def flush(self) -> None:
        with self.lock:
            self.raise_pending()
        with self.io_lock:
            self.flush_locked()

    def run(self) -> None:
        while True:
            self.wake.wait()
            if self.stop.wait(self.interval):
                return
            try:
                with self.io_lock:
                    self.flush_locked()
            except Exception as exc:  # noqa: BLE001 - kept; the next call raises it
                with self.lock:
                    self.error = exc
            with self.lock:  # close() sets closed under this lock before it wakes us
                if not self.buffer and not self.closed:
                    self.wake.clear()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.wake.set()
        self.stop.set()
        self.thread.join()
        error, self.error = self.error, None
        with self.io_lock:
            try:
                self.flush_locked()
            finally:
                self.release()
        if error is not None:
            raise AuditError(f"the background audit flush failed: {error!r}") from error

    def close_quietly(self) -> None:
        """Close at garbage collection or interpreter exit, where nobody can catch."""
        try:
            self.close()
        except AuditError:
            _LOG.exception("kairo-guard: the audit log in %s did not close cleanly", self.dir)

    def flush_locked(self) -> None:
        """Write the buffered batch; caller holds ``io_lock``."""
        if self.fd < 0:  # closed by another thread: the number may belong to a new file
            raise AuditError("the audit log is closed")
        with self.lock:
            batch, self.buffer = self.buffer, []
        if not batch and not self.head_stale:
            return
        try:
            with _flocked(self.fd, fcntl.LOCK_EX):
                try:
                    self.sync(batch)
                    ts = self.clock()
                    self.write_batch(batch, ts)
                except BaseException:
                    with self.lock:
                        self.buffer[:0] = batch
                    raise
                self.write_head(ts)
        except OSError as exc:
            raise AuditError(f"cannot write the audit log in {self.dir}: {exc}") from exc

    def inspect(self) -> Tail:
        tail = check_tail(self.fd, self.dir, self.keys)
        self.count, self.last_hash = tail.count, tail.last_hash
        return tail

    def check_anchor(self) -> None:  # at open and repair, not each write: the store may be away
        if self.anchor is not None:
            self.anchor.check(self.fd, self.count)

    def sync(self, batch: list[bytes]) -> None:
        """Learn where the chain ends, if another process wrote; recover a torn tail."""
        size = os.fstat(self.fd).st_size
        if size == self.size and (
            size == 0 or os.pread(self.fd, 64, size - 66) == self.last_hash.encode()
        ):  # the tail is still ours: no need to read it
            return
        tail = self.inspect()
        if tail.end < tail.size:
            batch.insert(0, self.recover(tail.end, tail.size))
        self.size = tail.end
        if tail.head is None:
            self.write_head(self.clock())  # count 0: a crash before the next head is benign

    def recover(self, end: int, size: int) -> bytes:
        """Move the torn fragment after ``end`` aside; return the entry recording it."""
        name, fragment = move_aside(self.fd, self.dir_fd, self.dir, end, size, self.clock())
        _LOG.warning("kairo-guard: moved a torn audit tail of %d bytes to %s", len(fragment), name)
        digest = hashlib.sha256(fragment).hexdigest()
        return _mid({"event": TORN_EVENT, "bytes": len(fragment), "sha256": digest})

    def repair(self) -> int:
        """Move a torn tail aside and record it now (not at the next write); return its
        size in bytes (0: nothing was torn)."""
        with self.io_lock, _flocked(self.fd, fcntl.LOCK_EX):
            tail = self.inspect()
            self.check_anchor()
            self.size = tail.size
            if tail.end == tail.size:
                return 0
            entry = self.recover(tail.end, tail.size)
            self.size = tail.end
            ts = self.clock()
            self.write_batch([entry], ts)
            self.write_head(ts)
            return tail.size - tail.end

    def write_batch(self, batch: list[bytes], ts: float) -> None:
        """Chain, write and fsync ``batch``; on failure cut the file back."""
        if not batch:
            return
        ts_b, seq, prev = orjson.dumps(ts), self.count, self.last_hash.encode()
        lines = []
        sha256 = hashlib.sha256
        for mid in batch:
            start = b'{"seq":%d,"ts":%b,"prev":"%b"%b' % (seq, ts_b, prev, mid)
            prev = sha256(start + b"}").hexdigest().encode()
            lines.append(b'%b,"hash":"%b"}\n' % (start, prev))
            seq += 1
        data = b"".join(lines)
        try:
            _write_all(self.fd, data)
            os.fsync(self.fd)
        except OSError as exc:
            try:
                os.ftruncate(self.fd, self.size)
            except OSError as undo:
                exc.add_note(f"and cutting the partial batch off failed too: {undo}")
            raise
        self.size += len(data)
        self.count, self.last_hash, self.head_stale = seq, prev.decode(), True

    def write_head(self, ts: float) -> None:
        """Replace ``audit.head`` atomically and durably."""
        data = encode_head(self.count, self.last_hash, ts, self.key_id, self.key)
        tmp = self.dir / f"{HEAD_NAME}.{os.getpid()}.tmp"
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(out, data)
                os.fsync(out)
            finally:
                os.close(out)
            os.replace(tmp, self.dir / HEAD_NAME)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError as undo:
                exc.add_note(f"and removing {tmp.name} failed too: {undo}")
            raise
        os.fsync(self.dir_fd)
        self.head_stale = False
        if self.anchor is not None:  # under the flock: anchors advance in log order
            self.anchor.advance(Anchor(self.count, self.last_hash, self.size, ts))


class AuditLog:
    """Appends guard decisions to the hash-chained log in ``directory``.

    Entries are written within ``flush_interval`` seconds by a background thread, at
    once when ``batch_size`` are waiting, and on :meth:`close` (also run at garbage
    collection and interpreter exit). A write that fails is raised by the next
    :meth:`append`, :meth:`flush` or :meth:`close`: a guard that cannot record its
    decisions must fail closed. Safe to share between threads; processes each open
    their own (after a fork, not before: a forked copy would share the parent's lock).

    Args:
        directory: created with mode 0700 if missing; holds ``audit.jsonl``,
            ``audit.head`` and any ``audit.torn.*`` fragments moved aside.
        head_key, head_key_id: the secret that signs ``audit.head``, and its name.
        batch_size, flush_interval: entries per write; longest wait in memory (s).
        clock: returns Unix seconds for ``ts``.
        verify_keys: older head keys by key id (after a rotation): a head signed with a
            key id the writer does not hold is refused, never trusted for its count.
        anchor: where each head is also recorded, outside the directory; a log behind
            it is refused (:mod:`kairo_guard.audit.anchor`).

    Raises:
        ConfigError: if an argument is out of range.
        AuditError: if the directory or log cannot be opened.
        AuditIntegrityError: if the log's tail does not match its signed head.
    """

    def __init__(
        self,
        directory: Path,
        head_key: bytes,
        head_key_id: str,
        *,
        batch_size: int = 1024,
        flush_interval: float = 0.2,
        clock: Callable[[], float] = time.time,
        verify_keys: Mapping[str, bytes] | None = None,
        anchor: AuditAnchor | None = None,
    ) -> None:
        if not head_key or not head_key_id:
            raise ConfigError("AuditLog needs a non-empty head_key and head_key_id")
        if batch_size < 1 or not flush_interval > 0:
            raise ConfigError("AuditLog needs batch_size >= 1 and flush_interval > 0")
        self._writer = _Writer(
            Path(directory), head_key, head_key_id, batch_size, flush_interval, clock,
            verify_keys or {}, anchor,
        )  # fmt: skip
        self._finalizer = weakref.finalize(self, self._writer.close_quietly)
        self.path = Path(directory) / LOG_NAME
        """The log file (``audit.jsonl``), for readers such as tenant exports."""

    def append(self, entry: Mapping[str, JSONValue]) -> None:
        """Buffer the members of one decision; ``seq``, ``ts`` and ``prev`` come later.

        Args:
            entry: JSON-encodable members; keys ``seq``, ``ts``, ``prev`` and ``hash``
                are reserved.

        Raises:
            ValueError: if ``entry`` uses a reserved key or does not encode as JSON.
            AuditError: if the log is closed or an earlier write failed.
        """
        self._writer.append(_mid(entry))

    def repair(self) -> int:
        """Move a torn tail (a writer killed mid-append) aside to ``audit.torn.*`` and
        record that in the chain now; return the bytes moved (0: the log was whole).
        Every entry before the tear stays; verification passes afterwards.

        Raises:
            AuditIntegrityError: the log is damaged inside its signed range or behind
                its anchor (no repair: that is tampering or loss, not a torn write).
        """
        return self._writer.repair()

    def flush(self) -> None:
        """Write and fsync the buffered entries, then update the signed head.

        Raises:
            AuditError: if writing fails now or failed in the background.
            AuditIntegrityError: if the log no longer matches its signed head.
        """
        self._writer.flush()

    def close(self) -> None:
        """Flush and stop the background flusher; later calls do nothing.

        Raises:
            AuditError: if the last write fails or a background write had failed.
        """
        try:
            self._writer.close()
        finally:
            self._finalizer.detach()

    def disown(self) -> None:
        """In a child process after ``fork``: drop the entries the parent had not written
        yet (the parent writes them) and never write, flush or close anything here. The
        descriptors and their ``flock`` are shared with the parent, the flusher thread
        did not survive the fork, and a lock it held would stay held: nothing is waited
        on. Appending afterwards raises :class:`AuditError` (closed)."""
        self._finalizer.detach()
        writer = self._writer
        writer.lock, writer.io_lock = threading.Lock(), threading.Lock()
        writer.buffer = []
        writer.closed = True

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
