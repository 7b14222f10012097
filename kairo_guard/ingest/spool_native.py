"""The service's native spool writer: a thread of this process that never takes the
interpreter lock.

:class:`NativeSpoolClient` hands each body, not copied, to the writer thread of the C
extension ``kairo_guard.ingest._spoolw`` (built at install time beside the
fingerprinting core). The thread digests it (SHA-256), seals it (HMAC-SHA256 with the
parts :meth:`~kairo_guard.enforce.sealing.Sealer.spooled_parts` gives, the same seal
:meth:`~kairo_guard.enforce.sealing.Sealer.seal_spooled` makes), frames it as a spool
record (:mod:`kairo_guard.store.spool`) and appends everything that arrived during its
last pass with one ``writev`` and one ``fdatasync`` (group commit). It then signals an
eventfd the event loop watches, and the loop completes the bodies' futures, durable.
The event loop thereby spends on a body one call and one future: no pipe, no copy, no
hashing, and no second interpreter on the other core.

When the extension is missing (no compiler or no OpenSSL headers at install time),
:data:`AVAILABLE` is False and :class:`~kairo_guard.ingest.spooling.IngestSpool` uses the
writer process (:mod:`kairo_guard.ingest.spool_main`) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from kairo_guard.core.exceptions import StoreError
from kairo_guard.enforce.sealing import Sealer

try:  # compiled at install time (hatch_build.py); the writer process is the fallback
    import kairo_guard.ingest._spoolw as native_writer
except ImportError:  # not built: the writer process serves instead
    native_writer = None  # type: ignore[assignment]

AVAILABLE = native_writer is not None
"""True when the native writer was built."""
MAX_QUEUED = 256 << 20
"""Body bytes waiting for the writer past which a body is refused (the disk is stuck)."""
SEGMENT_BYTES = 64 << 20
COMPLETION_SLICE_NS = 400_000
"""How long one turn of the event loop completes durable bodies (each completion runs
its request's app) before it returns to the loop: the rest follow on the next turn,
after the loop has read what arrived meanwhile and handed those bodies to the writer.
Completing a whole pass at once would hold new requests back until every app of the
pass has run, and the writer idle meanwhile."""
logger = logging.getLogger("kairo_guard.ingest.spool_native")


class NativeSpoolClient:
    """Spools bodies through the native writer thread.

    Args:
        directory: the spool directory.
        sealer: seals spooled bodies (its :meth:`Sealer.spooled_parts`).
        sync: ``fdatasync`` each group (False only for tests of what is not durable).
    """

    def __init__(self, directory: Path, sealer: Sealer, *, sync: bool = True) -> None:
        if native_writer is None:
            raise StoreError("the native spool writer was not built")
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"cannot create the spool {directory}: {exc}") from exc
        self._writer = native_writer.Writer(str(directory), SEGMENT_BYTES, sync, StoreError)
        self._parts = sealer.spooled_parts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._continuing = False  # a _continue is scheduled on self._loop

    async def record(
        self, tenant: str, chunks: list[bytes], source: str, meta: bytes
    ) -> tuple[str, str]:
        """Spool a body; return its digest and seal once it is durable.

        Raises:
            StoreError: the writer could not record it (or is too far behind).
        """
        return await self.submit(tenant, chunks, source, meta)

    def submit(
        self, tenant: str, chunks: list[bytes], source: str, meta: bytes
    ) -> asyncio.Future[tuple[str, str]]:
        """:meth:`record` without a coroutine of its own (the middleware's fast path
        awaits the writer's future itself); call it from the running event loop.

        Raises:
            StoreError: the body is refused at once (the writer is too far behind, or
                the body is too large for a record); later failures are the future's.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._attach(loop)
        writer = self._writer
        if writer.queued_bytes > MAX_QUEUED:
            raise StoreError("the spool writer is behind")
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if type(body) is not bytes:  # the thread reads it without the lock: immutable only
            body = bytes(body)
        future: asyncio.Future[tuple[str, str]] = loop.create_future()
        try:
            if source:
                head, rest, block = self._parts(tenant=tenant, source=source)
                writer.submit(future, tenant.encode(), meta, body, head, rest, block)
            else:
                writer.submit(future, tenant.encode(), meta, body, None, b"", b"")
        except ValueError as exc:
            raise StoreError(f"cannot spool the body: {exc}") from exc
        return future

    def writer_for(self, loop: asyncio.AbstractEventLoop) -> Any:
        """The writer, its eventfd watched by ``loop`` (the running one)."""
        if loop is not self._loop:
            self._attach(loop)
        return self._writer

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        old, self._loop = self._loop, loop
        self._continuing = False
        if old is not None and not old.is_closed():
            with contextlib.suppress(Exception):
                old.remove_reader(self._writer.fileno())
        loop.add_reader(self._writer.fileno(), self._complete)

    def _complete(self, signalled: bool = True) -> None:
        writer = self._writer
        try:
            writer.complete(COMPLETION_SLICE_NS, signalled)
        except Exception:  # a future of a closed loop: its request is gone
            logger.exception("cannot complete spooled bodies")
        loop = self._loop
        if writer.pending and not self._continuing and loop is not None:
            self._continuing = True
            loop.call_soon(self._continue, loop)

    def _continue(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is self._loop:  # (another loop took the writer over meanwhile: its own)
            self._continuing = False
            self._complete(False)  # not woken by the eventfd: no read of it

    def close(self) -> None:
        """Write what is queued, end the thread, complete every future."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                loop.remove_reader(self._writer.fileno())
        try:
            self._writer.close()
        except Exception:
            logger.exception("cannot complete spooled bodies")
