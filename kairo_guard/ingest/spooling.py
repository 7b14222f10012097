"""The ingestion spool as a service sees it: durable hand-off, back-pressure, an indexer.

:class:`IngestSpool` gives the middleware what its request path needs and nothing
heavier: :meth:`IngestSpool.submit` hands a sealed body to this process's
:class:`~kairo_guard.store.spool.SpoolWriter` (group commit, one ``fdatasync`` for many
requests) and :attr:`IngestSpool.overloaded` says when the backlog is past
``limits.spool_max_bytes`` (the middleware answers 503 with ``Retry-After``). Bodies are
fingerprinted by an indexer (:mod:`kairo_guard.detect.indexer`) that runs, by
``indexer``:

- ``"process"`` (the default): a child process of this one (``python -m
  kairo_guard.ingest.indexer_main``), which opens its own guard from the same state
  directory and configuration, and drains the spool and exits when this process ends;
- ``"thread"``: a thread of this process (it shares the interpreter lock with the event
  loop: for tests and small services);
- ``"none"``: no indexer of its own; another process runs ``kairo-guard index serve``
  (a check at a shared sink indexes what is left when no indexer runs).

The environment variable :data:`ENV_INDEXER` gives the default.
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
from typing import TYPE_CHECKING

from kairo_guard.detect.indexer import serve
from kairo_guard.store.spool import SpoolWriter, backlog, encode_body

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

ENV_INDEXER = "KAIRO_GUARD_INDEXER"
"""Default indexer mode of :class:`IngestSpool`: ``process``, ``thread`` or ``none``."""
INDEXER_MODES = ("process", "thread", "none")
BACKLOG_EVERY = 0.2
"""Seconds between measurements of the backlog (never per request)."""
logger = logging.getLogger("kairo_guard.ingest.spooling")


class IngestSpool:
    """This process's end of the ingestion spool.

    Args:
        guard: the guard (its state directory holds the spool).
        indexer: ``process``, ``thread`` or ``none`` (default: :data:`ENV_INDEXER`, else
            ``process``).
    """

    def __init__(self, guard: Guard, *, indexer: str | None = None) -> None:
        mode = indexer or os.environ.get(ENV_INDEXER) or "process"
        if mode not in INDEXER_MODES:
            raise ValueError(f"indexer must be one of {', '.join(INDEXER_MODES)}, not {mode!r}")
        self._guard = guard
        self.mode = mode
        self.directory = guard.spool_directory
        self.max_backlog = guard.settings.limits.spool_max_bytes
        self._writer: SpoolWriter | None = None
        self._pid = 0
        self._backlog_at = 0.0
        self.backlog_bytes = 0
        """The backlog when last measured (at most :data:`BACKLOG_EVERY` ago)."""
        self._child: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def submit(self, tenant: str, seal: str, body: bytes) -> asyncio.Future[None]:
        """Spool a body (``seal`` empty: index only); the future completes once it is
        durable, or fails with :class:`~kairo_guard.core.exceptions.StoreError`."""
        writer = self._writer
        if writer is None or self._pid != os.getpid():  # first use, or a forked child
            writer = self._start()
        return writer.submit(encode_body(tenant, seal, body))

    @property
    def overloaded(self) -> bool:
        """True while the backlog is over ``limits.spool_max_bytes`` (measured at most
        every :data:`BACKLOG_EVERY` seconds)."""
        now = time.monotonic()
        if now - self._backlog_at >= BACKLOG_EVERY:
            self._backlog_at = now
            self.backlog_bytes = backlog(self.directory).pending_bytes
        return self.backlog_bytes > self.max_backlog

    def _start(self) -> SpoolWriter:
        self._pid = os.getpid()
        self._writer = SpoolWriter(self.directory)
        if self.mode == "process":
            self._child = _spawn_indexer(self._guard)
        elif self.mode == "thread":
            self._stop.clear()
            self._thread = threading.Thread(
                target=serve,
                args=(self._guard.indexer, self._stop.is_set),
                name="kairo-guard-indexer",
                daemon=True,
            )
            self._thread.start()
        return self._writer

    def close(self) -> None:
        """Make what is queued durable, stop an indexer of ours (it drains first)."""
        if self._writer is not None and self._pid == os.getpid():
            self._writer.close()
        self._writer = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None
        if self._child is not None:
            with contextlib.suppress(OSError):
                self._child.stdin.close()  # type: ignore[union-attr]
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(60)
            self._child = None


def _spawn_indexer(guard: Guard) -> subprocess.Popen[bytes]:
    settings = guard.settings
    cmd = [sys.executable, "-m", "kairo_guard.ingest.indexer_main", "--home", str(settings.home)]
    if settings.config_file is not None:
        cmd += ["--config", str(settings.config_file)]
    # stdin is the lifeline: the child drains the spool and exits at its end of file
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, start_new_session=True)
