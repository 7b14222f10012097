"""An append-only, hash-chained audit log of guard decisions: digests, never content.

Entries are buffered by :meth:`AuditLog.append` and written in batches. ``seq``, ``ts``
and ``prev`` are assigned at flush time under an exclusive ``flock`` on the log, so any
number of processes may share one directory. After every batch the log is fsync'd and
``audit.head``, an HMAC-signed count and last hash, is replaced atomically, which makes
truncating the tail detectable (like Certificate Transparency's signed tree head).
The format and the verifier live in :mod:`kairo_guard.audit_verify`.
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
from typing import cast

import orjson

from kairo_guard.audit_verify import (
    GENESIS,
    HEAD_NAME,
    LOG_NAME,
    RESERVED_KEYS,
    TORN_EVENT,
    TORN_PREFIX,
    AuditVerification,
    SignedHead,
    decode_head,
    encode_head,
    parse_entry,
    verify_audit,
)
from kairo_guard.exceptions import AuditError, AuditIntegrityError, ConfigError
from kairo_guard.types import JSONValue

__all__ = ["AuditLog", "AuditVerification", "JSONValue", "verify_audit"]

_LOG = logging.getLogger(__name__)
_BLOCK = 64 * 1024
_MAX_TAIL = 16 * 1024 * 1024
_BACKLOG_BATCHES = 4


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
    ) -> None:
        self.dir, self.key, self.key_id, self.clock = directory, key, key_id, clock
        self.batch_size, self.interval = batch_size, interval
        self.lock = threading.Lock()  # guards buffer, error, closed
        self.io_lock = threading.Lock()  # one flush at a time in this process
        self.buffer: list[bytes] = []
        self.error: BaseException | None = None
        self.closed = False
        self.size, self.count, self.last_hash = -1, 0, GENESIS  # -1: not read yet
        self.head_stale = False
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self.fd = os.open(directory / LOG_NAME, flags, 0o600)
            with self.flocked(fcntl.LOCK_SH):
                self.inspect()  # fail closed at open, not at the first decision
        except BaseException as exc:
            self.release()
            if isinstance(exc, OSError):
                raise AuditError(f"cannot open the audit log in {directory}: {exc}") from exc
            raise
        self.wake, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.run, name="kairo-guard-audit", daemon=True)
        self.thread.start()

    def release(self) -> None:
        for name in ("fd", "dir_fd"):
            fd = self.__dict__.pop(name, None)
            if fd is not None:
                os.close(fd)

    def flocked(self, how: int) -> _Flock:
        return _Flock(self.fd, how)

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
            with self.lock:
                if not self.buffer:
                    self.wake.clear()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            error, self.error = self.error, None
        self.stop.set()
        self.wake.set()
        self.thread.join()
        try:
            with self.io_lock:
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
        with self.lock:
            batch, self.buffer = self.buffer, []
        if not batch and not self.head_stale:
            return
        try:
            with self.flocked(fcntl.LOCK_EX):
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

    def inspect(self) -> tuple[int, int, str, SignedHead | None]:
        """Check the tail against the head; return (size, complete end, hash, head).

        Raises:
            AuditIntegrityError: if the head is missing, forged, or vouches for more.
        """
        size = os.fstat(self.fd).st_size
        line, end = _read_tail(self.fd, size)
        count, last_hash = 0, GENESIS
        if line is not None:
            try:
                entry, last_hash = parse_entry(line)
            except ValueError as exc:
                raise AuditIntegrityError(f"the last line of {LOG_NAME}: {exc}") from exc
            count = cast(int, entry["seq"]) + 1  # parse_entry checked it
        head = self.read_head()
        if head is None and size:
            raise AuditIntegrityError(f"{HEAD_NAME} is missing but {LOG_NAME} is not empty")
        if head is not None and head.count > count:
            where = "complete lines (the rest is torn)" if end < size else "entries"
            raise AuditIntegrityError(
                f"{HEAD_NAME} signs {head.count} entries but {LOG_NAME} holds {count} "
                f"{where}: it was truncated inside its signed range",
                line=count + 1,
            )
        if head is not None and head.count == count and count and head.hash != last_hash:
            raise AuditIntegrityError(f"line {count} differs from {HEAD_NAME}", line=count)
        self.count, self.last_hash = count, last_hash
        return size, end, last_hash, head

    def read_head(self) -> SignedHead | None:
        try:
            head = decode_head((self.dir / HEAD_NAME).read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise AuditIntegrityError(str(exc)) from exc
        if head.key_id == self.key_id and not head.mac_ok(self.key):
            raise AuditIntegrityError(f"{HEAD_NAME}: mac does not verify (forged?)")
        return head

    def sync(self, batch: list[bytes]) -> None:
        """Learn where the chain ends, if another process wrote; recover a torn tail."""
        if os.fstat(self.fd).st_size == self.size:
            return
        size, end, _, head = self.inspect()
        if end < size:
            batch.insert(0, self.recover(end, size))
            size = end
        self.size = size
        if head is None:
            self.write_head(self.clock())  # count 0: a crash before the next head is benign

    def recover(self, end: int, size: int) -> bytes:
        """Move the torn fragment after ``end`` aside; return the entry recording it."""
        fragment = os.pread(self.fd, size - end, end)
        stamp, n = int(self.clock()), 0
        while True:
            name = f"{TORN_PREFIX}{stamp}" + (f".{n}" if n else "")
            try:
                out = os.open(self.dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                n += 1
        try:
            _write_all(out, fragment)
            os.fsync(out)
        finally:
            os.close(out)
        os.fsync(self.dir_fd)
        os.ftruncate(self.fd, end)
        os.fsync(self.fd)
        _LOG.warning("kairo-guard: moved a torn audit tail of %d bytes to %s", len(fragment), name)
        digest = hashlib.sha256(fragment).hexdigest()
        return _mid({"event": TORN_EVENT, "bytes": len(fragment), "sha256": digest})

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
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(out, data)
            os.fsync(out)
        finally:
            os.close(out)
        os.replace(tmp, self.dir / HEAD_NAME)
        os.fsync(self.dir_fd)
        self.head_stale = False


class _Flock:
    """``with`` an ``flock`` on a descriptor."""

    def __init__(self, fd: int, how: int) -> None:
        self.fd, self.how = fd, how

    def __enter__(self) -> None:
        fcntl.flock(self.fd, self.how)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


def _mid(entry: Mapping[str, JSONValue]) -> bytes:
    """Serialise the caller's members as they will sit between ``prev`` and ``hash``."""
    if not RESERVED_KEYS.isdisjoint(entry):
        raise ConfigError(f"audit entries may not set {sorted(RESERVED_KEYS & set(entry))}")
    try:
        raw = orjson.dumps(entry if type(entry) is dict else dict(entry))
    except orjson.JSONEncodeError as exc:
        raise ConfigError(f"an audit entry does not encode as JSON: {exc}") from exc
    return b"," + raw[1:-1] if len(raw) > 2 else b""


class AuditLog:
    """Appends guard decisions to the hash-chained log in ``directory``.

    Entries are written within ``flush_interval`` seconds by a background thread, at
    once when ``batch_size`` are waiting, and on :meth:`close` (also run at garbage
    collection and interpreter exit). A write that fails is raised by the next
    :meth:`append`, :meth:`flush` or :meth:`close`: a guard that cannot record its
    decisions must fail closed. Safe to share between threads and processes.

    Args:
        directory: created with mode 0700 if missing; holds ``audit.jsonl``,
            ``audit.head`` and any ``audit.torn.*`` fragments moved aside.
        head_key: the secret that signs ``audit.head``.
        head_key_id: names ``head_key`` for verifiers.
        batch_size: entries per write.
        flush_interval: longest time in seconds an entry waits in memory.
        clock: returns Unix seconds for ``ts``.

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
    ) -> None:
        if not head_key or not head_key_id:
            raise ConfigError("AuditLog needs a non-empty head_key and head_key_id")
        if batch_size < 1 or not flush_interval > 0:
            raise ConfigError("AuditLog needs batch_size >= 1 and flush_interval > 0")
        self._writer = _Writer(
            Path(directory), head_key, head_key_id, batch_size, flush_interval, clock
        )
        self._finalizer = weakref.finalize(self, self._writer.close_quietly)

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

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
