"""The spool's writer thread: records made durable in groups, from any thread or loop.

:class:`SpoolWriter` appends records (or :class:`BodyJob` bodies, digested and sealed in
its thread) to this process's segment (:class:`~kairo_guard.store.spool_append.SegmentAppender`)
with one ``fdatasync`` for everything queued since the last one. Services use it through
:class:`~kairo_guard.ingest.spooling.IngestSpool` in ``thread`` mode; the default writer
is a process of its own (:mod:`kairo_guard.ingest.spool_main`), which keeps the hashing
and the disk waits off the service's interpreter lock.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kairo_guard.core.exceptions import StoreError
from kairo_guard.store.spool import body_parts
from kairo_guard.store.spool_append import SegmentAppender

logger = logging.getLogger("kairo_guard.store.spool_writer")


class BodyJob:
    """A body to spool, framed in the writer's thread: its digest (SHA-256, which
    releases the interpreter lock on large bodies) and seal are made there, off the
    event loop; both are set once the future completes.

    Args:
        tenant: whose content the body is.
        chunks: the body, as it arrived.
        seal: digest -> the body's seal (None: index only, no seal).
        meta: ``METHOD path`` of the request.
    """

    __slots__ = ("_seal", "chunks", "digest", "meta", "seal", "tenant")

    def __init__(
        self,
        tenant: str,
        chunks: list[bytes],
        seal: Callable[[str], str] | None,
        meta: bytes = b"",
    ) -> None:
        self.tenant = tenant
        self.chunks = chunks
        self.meta = meta
        self._seal = seal
        self.digest = ""
        self.seal = ""

    def frame(self) -> list[bytes]:
        """Digest, seal and frame the body (the writer calls this): the record's
        buffers, the body among them uncopied."""
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks = []
        self.digest = hashlib.sha256(body).hexdigest()
        if self._seal is not None:
            self.seal = self._seal(self.digest)
        return body_parts(self.tenant, self.seal, body, self.meta)


_Job = bytes | BodyJob
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class SpoolWriter:
    """Appends records to this process's segment; a thread makes them durable in groups.

    Args:
        directory: the spool directory (created 0700).
        segment_bytes: a segment is closed and a new one opened past this size.
        sync: ``fdatasync`` each group (False only for tests of what is not durable).

    Raises:
        StoreError: if the directory cannot be created.
    """

    def __init__(self, directory: Path, *, segment_bytes: int = 64 << 20, sync: bool = True):
        self.directory = directory
        self._queue: collections.deque[tuple[_Job, _Waiter]] = collections.deque()
        self._wake = threading.Event()
        self._closing = False
        self._segments = SegmentAppender(directory, segment_bytes=segment_bytes, sync=sync)
        self._thread = threading.Thread(target=self._run, name="kairo-guard-spool", daemon=True)
        self._thread.start()

    def submit(self, job: _Job) -> asyncio.Future[Any]:
        """Queue a framed record or a :class:`BodyJob` (from the running event loop);
        the future completes once it is durable, or fails with :class:`StoreError`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._enqueue(job, (loop, future))
        return future

    def _enqueue(self, job: _Job, waiter: _Waiter) -> None:
        if self._closing:
            raise StoreError("the spool is closed")
        self._queue.append((job, waiter))
        if not self._wake.is_set():  # the writer clears it before it drains the queue
            self._wake.set()

    def close(self) -> None:
        """Write what is queued, then close the segment (idempotent)."""
        if not self._closing:
            self._closing = True
            self._wake.set()
            self._thread.join(30)

    def _run(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait()
            self._wake.clear()
            batch = [queue.popleft() for _ in range(len(queue))]
            if batch:
                try:
                    self._commit(batch)
                except Exception as exc:  # the waiters must hear of it
                    logger.exception("spool writer failed")
                    _release([waiter for _, waiter in batch], f"spool writer failed: {exc}")
            elif self._closing:
                break
        self._segments.close()

    def _commit(self, batch: list[tuple[_Job, _Waiter]]) -> None:
        framed: list[bytes] = []
        ok: list[_Waiter] = []
        for job, waiter in batch:
            try:
                if isinstance(job, bytes):
                    framed.append(job)
                else:
                    framed += job.frame()
            except Exception as exc:  # noqa: BLE001 - that body fails, not the group
                _release([waiter], f"cannot spool the body: {exc}")
                continue
            ok.append(waiter)
        error = self._segments.append(framed)
        _release(ok, error)


def _release(waiters: list[_Waiter], error: str | None) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[Any]]] = {}
    for loop, future in waiters:
        by_loop.setdefault(loop, []).append(future)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[Any]], error: str | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(StoreError(error))
