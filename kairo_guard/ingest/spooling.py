"""The ingestion spool as a service sees it: durable hand-off, back-pressure, an indexer.

:class:`IngestSpool` gives the middleware what its request path needs and nothing
heavier: :meth:`IngestSpool.record` hands a body to a spool writer, which digests and
seals it and appends it to the spool with group commit (one ``fdatasync`` for many
requests), by ``writer``:

- ``"native"`` (the default where it was built): a thread of this process in C that
  never takes the interpreter lock (:mod:`kairo_guard.ingest.spool_native`);
- ``"process"`` (the default elsewhere): a writer process of this one
  (:mod:`kairo_guard.ingest.spool_main`, reached through a pipe: the hashing, sealing
  and disk waits happen under another interpreter lock);
- ``"thread"``: a Python thread (:class:`~kairo_guard.store.spool_writer.SpoolWriter`),
  for tests and small services.

:attr:`IngestSpool.overloaded` says when the backlog is past
``limits.spool_max_bytes`` (the middleware answers 503 with ``Retry-After``). Bodies are
fingerprinted by an indexer (:mod:`kairo_guard.detect.indexer`) that runs, by
``indexer``:

- ``"process"`` (the default): a child process of this one (``python -m
  kairo_guard.ingest.indexer_main``), which opens its own guard from the same state
  directory and configuration, and drains the spool and exits when this process ends
  (for at most ``limits.shutdown_index_seconds``: :meth:`IngestSpool.close`);
- ``"thread"``: a thread of this process (it shares the interpreter lock with the event
  loop: for tests and small services);
- ``"none"``: no indexer of its own; another process indexes (``python -m
  kairo_guard.ingest.indexer_main --home DIR``), or a check at a shared sink indexes
  what is left when it starts (it does whenever no indexer runs).

The environment variables :data:`ENV_INDEXER` and :data:`ENV_WRITER` give the defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kairo_guard.config.settings import child_environment
from kairo_guard.core.exceptions import StoreError
from kairo_guard.detect.index_service import serve
from kairo_guard.ingest import spool_native
from kairo_guard.ingest.spool_client import SpoolProcessClient
from kairo_guard.ingest.spool_native import NativeSpoolClient
from kairo_guard.ingest.spool_wire import ring_message
from kairo_guard.store.spool import backlog
from kairo_guard.store.spool_writer import BodyJob, SpoolWriter

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

ENV_INDEXER = "KAIRO_GUARD_INDEXER"
"""Default indexer mode of :class:`IngestSpool`: ``process``, ``thread`` or ``none``."""
INDEXER_MODES = ("process", "thread", "none")
ENV_WRITER = "KAIRO_GUARD_SPOOL_WRITER"
"""Default writer mode of :class:`IngestSpool`: ``native``, ``process`` or ``thread``."""
WRITER_MODES = ("native", "process", "thread")
BACKLOG_EVERY = 0.2
"""Seconds between measurements of the backlog (never per request)."""
ABANDON_GRACE = 10.0
"""Seconds an indexer told to stop at the shutdown bound has to end its pass."""
logger = logging.getLogger("kairo_guard.ingest.spooling")
_PID = [os.getpid()]
"""This process's id, kept current across forks (``os.getpid`` is a system call)."""
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


class IngestSpool:
    """This process's end of the ingestion spool.

    Args:
        guard: the guard (its state directory holds the spool).
        indexer: ``process``, ``thread`` or ``none`` (default: :data:`ENV_INDEXER`, else
            ``process``).
        writer: ``native``, ``process`` or ``thread`` (see the module; default:
            :data:`ENV_WRITER`, else ``native`` where it was built, else ``process``).
    """

    def __init__(
        self, guard: Guard, *, indexer: str | None = None, writer: str | None = None
    ) -> None:
        mode = indexer or os.environ.get(ENV_INDEXER) or "process"
        if mode not in INDEXER_MODES:
            raise ValueError(f"indexer must be one of {', '.join(INDEXER_MODES)}, not {mode!r}")
        default = "native" if spool_native.AVAILABLE else "process"
        writer_mode = writer or os.environ.get(ENV_WRITER) or default
        if writer_mode not in WRITER_MODES:
            raise ValueError(f"writer must be one of {', '.join(WRITER_MODES)}, not {writer!r}")
        if writer_mode == "native" and not spool_native.AVAILABLE:
            raise ValueError("the native spool writer was not built: use 'process'")
        self.writer_mode = writer_mode
        self._client: SpoolProcessClient | NativeSpoolClient | None = None
        self._guard = guard
        self.mode = mode
        self.directory = guard.spool_directory
        self.max_backlog = guard.settings.limits.spool_max_bytes
        self.min_free = guard.settings.limits.spool_min_free_bytes
        self.free_bytes: int | None = None
        """Free space of the spool's file system when last measured (None: unknown)."""
        self._writer: SpoolWriter | None = None
        self._pid = 0
        self._backlog_at = 0.0
        self.backlog_bytes = 0
        """The backlog when last measured (at most :data:`BACKLOG_EVERY` ago)."""
        self._child: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._abandon = threading.Event()

    def native_writer(self, loop: asyncio.AbstractEventLoop) -> Any:
        """The native writer (``_spoolw.Writer``) serving ``loop`` in this process,
        started on first use or after a fork (the middleware's native door submits to it
        itself: :mod:`kairo_guard.ingest.door`).

        Raises:
            StoreError: this spool does not write natively, or cannot start.
        """
        if self._pid != _PID[0]:
            self._start()
        client = self._client
        if not isinstance(client, NativeSpoolClient):
            raise StoreError("this spool's writer is not the native one")
        return client.writer_for(loop)

    async def record(
        self, tenant: str, chunks: list[bytes], source: str, meta: bytes = b""
    ) -> tuple[str, str]:
        """Spool a body as ``tenant``'s, sealed with ``source`` (empty: index only, no
        seal); return its digest and seal once it is durable.

        Raises:
            StoreError: it could not be recorded (the middleware answers 503).
        """
        return await self.submit(tenant, chunks, source, meta)

    def submit(
        self, tenant: str, chunks: list[bytes], source: str, meta: bytes = b""
    ) -> Awaitable[tuple[str, str]]:
        """:meth:`record` without a coroutine of its own where the writer gives a
        future (the native writer: the middleware's fast path awaits it directly).

        Raises:
            StoreError: the body is refused at once (else the awaitable raises it).
        """
        if self._pid != _PID[0]:  # first use, or a forked child: start ours
            self._start()
        client = self._client
        if isinstance(client, NativeSpoolClient):
            return client.submit(tenant, chunks, source, meta)
        if client is not None:
            return client.record(tenant, chunks, source, meta)
        return self._record_in_thread(tenant, chunks, source, meta)

    async def _record_in_thread(
        self, tenant: str, chunks: list[bytes], source: str, meta: bytes
    ) -> tuple[str, str]:
        if self._writer is None:
            raise StoreError("the spool writer is not running")
        sealer = self._guard.sealer.seal_spooled
        seal = (lambda d: sealer(d, tenant=tenant, source=source)) if source else None
        job = BodyJob(tenant, chunks, seal, meta)
        await self._writer.submit(job)
        return job.digest, job.seal

    @property
    def overloaded(self) -> bool:
        """True while the backlog is over ``limits.spool_max_bytes`` or the spool's file
        system has less than ``limits.spool_min_free_bytes`` free (both measured at most
        every :data:`BACKLOG_EVERY` seconds): the spool never fills the disk."""
        now = time.monotonic()
        if now - self._backlog_at >= BACKLOG_EVERY:
            self._backlog_at = now
            try:
                stat = os.statvfs(self.directory)
                self.free_bytes = stat.f_bavail * stat.f_frsize
            except OSError:  # not there yet (or unreadable): writing decides
                self.free_bytes = None
            try:
                self.backlog_bytes = backlog(self.directory).pending_bytes
            except StoreError:  # unmeasured; writing decides (a body not recorded is a 503)
                logger.exception("cannot measure the spool's backlog")
                return False
        free = self.free_bytes
        return self.backlog_bytes > self.max_backlog or (free is not None and free < self.min_free)

    def _start(self) -> None:
        self._pid = _PID[0]
        if self.writer_mode == "native":
            self._client = NativeSpoolClient(self.directory, self._guard.sealer)
        elif self.writer_mode == "process":
            settings = self._guard.settings
            self._client = SpoolProcessClient(
                settings.home, settings.config_file, self._guard.keys.to_json(),
                child_environment(settings),
            )  # fmt: skip
        else:
            self._writer = SpoolWriter(self.directory)
        if self.mode == "process":
            self._child = _spawn_indexer(self._guard)
        elif self.mode == "thread":
            self._stop.clear()
            self._abandon.clear()
            self._thread = threading.Thread(
                target=serve,
                args=(self._guard.indexer, self._stop.is_set),
                kwargs={"abandon": self._abandon.is_set},
                name="kairo-guard-indexer",
                daemon=True,
            )
            self._thread.start()

    def close(self) -> None:
        """Make what is queued durable, stop an indexer of ours: it indexes what was
        accepted, for at most ``limits.shutdown_index_seconds``; past that it stops after
        the pass it is in (:data:`ABANDON_GRACE` seconds at most) and leaves the rest,
        durable, to the next indexer or shared-sink check (the spool's directory must
        outlive the service: see docs/ingestion.md)."""
        if self._pid == _PID[0]:
            if self._writer is not None:
                self._writer.close()
            if self._client is not None:
                self._client.close()
        self._writer = self._client = None
        self._pid = 0
        bound = self._guard.settings.limits.shutdown_index_seconds
        self._stop.set()
        if self._thread is not None:
            self._thread.join(bound)
            self._abandon.set()
            self._thread.join(ABANDON_GRACE)
            self._thread = None
        if self._child is not None:
            _end_child(self._child, bound)
            self._child = None


def _end_child(child: subprocess.Popen[bytes], bound: float) -> None:
    """Close the indexer process's lifeline (it drains and exits); past ``bound``
    seconds SIGTERM (it ends after its pass); past :data:`ABANDON_GRACE` more, SIGKILL
    (its progress is kept per committed batch)."""
    with contextlib.suppress(OSError):
        child.stdin.close()  # type: ignore[union-attr]
    for wait, end in ((bound, child.terminate), (ABANDON_GRACE, child.kill), (None, None)):
        try:
            child.wait(wait)
            return
        except subprocess.TimeoutExpired:
            if end is not None:
                with contextlib.suppress(OSError):
                    end()


def _spawn_indexer(guard: Guard) -> subprocess.Popen[bytes]:
    settings = guard.settings
    cmd = [sys.executable, "-m", "kairo_guard.ingest.indexer_main", "--home", str(settings.home)]
    if settings.config_file is not None:
        cmd += ["--config", str(settings.config_file)]
    # stdin is the lifeline: the child drains the spool and exits at its end of file.
    # A process group of its own (a terminal's Ctrl-C is not for it), not a session: a
    # new session is a new scheduler autogroup (Linux), whose weight competes with this
    # service's as an equal, so SCHED_IDLE would rank it low only against its own
    # threads; in the service's autogroup it runs on the CPU time the service leaves.
    child = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, process_group=0, env=child_environment(settings)
    )
    # at once, not once it has imported itself: its start-up must not slow requests
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(child.pid, os.SCHED_IDLE, os.sched_param(0))
    stdin = child.stdin
    if stdin is not None:
        stdin.write(ring_message(guard.keys.to_json()))
        stdin.flush()
    return child
