"""The service's end of the spool writer process: bodies down a pipe, acks back.

:class:`SpoolProcessClient` starts ``python -m kairo_guard.ingest.spool_main`` on first
use (from the running event loop), writes each body down its standard input without
copying it and completes the body's future when the writer acks it, durable. If the
writer dies, every body it has not acked fails (the middleware answers 503) and the
next body starts a new writer; a body is never acked that is not on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

from kairo_guard.core.exceptions import StoreError
from kairo_guard.ingest.spool_wire import read_acks, request_parts, ring_message

logger = logging.getLogger("kairo_guard.ingest.spool_client")
MAX_BUFFERED = 256 << 20
"""Bytes waiting in the pipe's buffer past which a body is refused (the writer is stuck)."""
_F_SETPIPE_SZ = 1031
_PIPE_BYTES = 1 << 20


class _WriterProtocol(asyncio.SubprocessProtocol):
    def __init__(self, client: SpoolProcessClient) -> None:
        self._client = client
        self._acks = bytearray()
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        if fd == 1:
            self._acks += data
            self._client.acked(read_acks(self._acks))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in (0, 1) and self._transport is not None:
            reason = f"the spool writer's pipe closed ({exc or 'end of file'})"
            self._client.lost(reason, self._transport)

    def process_exited(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            self._client.lost("the spool writer exited", transport)
            transport.close()  # it has exited: closing only releases the pipes


CLOSE_WAIT = 10.0
"""Seconds :meth:`SpoolProcessClient.close` waits for the writer to write and exit."""


class SpoolProcessClient:
    """Spools bodies through a writer process of the state directory.

    Args:
        home: the state directory.
        config_file: the configuration the writer reads (None: its own lookup).
        ring_json: the service's key ring (key-file JSON), handed to the writer first.
        env: the writer's environment (the service's store and state directory name).
    """

    def __init__(
        self,
        home: Path,
        config_file: Path | None,
        ring_json: bytes,
        env: dict[str, str] | None = None,
    ) -> None:
        self._ring = ring_message(ring_json)
        self._env = env
        self._cmd = [sys.executable, "-m", "kairo_guard.ingest.spool_main", "--home", str(home)]
        if config_file is not None:
            self._cmd += ["--config", str(config_file)]
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: Any = None
        self._starting: asyncio.Future[None] | None = None
        self._pending: dict[int, asyncio.Future[tuple[str, str]]] = {}
        self._seq = 0
        self._queued: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def record(
        self, tenant: str, chunks: list[bytes], source: str, meta: bytes
    ) -> tuple[str, str]:
        """Spool a body; return its digest and seal once it is durable.

        Raises:
            StoreError: the writer could not record it (or is too far behind).
        """
        if self._loop is not asyncio.get_running_loop():  # first use, or another loop
            self.close()
            self._loop = asyncio.get_running_loop()
        if self._stdin is None:
            await self._start()
        stdin = self._stdin
        if stdin is None or stdin.is_closing():
            raise StoreError("the spool writer is not running")
        if stdin.get_write_buffer_size() > MAX_BUFFERED:
            raise StoreError("the spool writer is behind")
        self._seq = seq = self._seq + 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[str, str]] = loop.create_future()
        self._pending[seq] = future
        queued = self._queued
        if not queued:  # one pipe write for every body of this loop iteration
            loop.call_soon(self._flush)
        queued += request_parts(seq, tenant.encode(), source.encode("ascii"), meta, chunks)
        return await future

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        stdin = self._stdin
        if stdin is not None and not stdin.is_closing():
            stdin.writelines(queued)
        else:
            self.lost("the spool writer is not running")

    async def _start(self) -> None:
        if self._starting is not None:  # another request is starting it
            await asyncio.shield(self._starting)
            return
        loop = asyncio.get_running_loop()
        starting = self._starting = loop.create_future()
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _WriterProtocol(self),
                *self._cmd,
                stderr=None,
                start_new_session=True,
                env=self._env,
            )
        except Exception as exc:
            self._starting = None
            error = StoreError(f"cannot start the spool writer: {exc}")
            starting.set_exception(error)
            starting.exception()  # retrieved here: waiters raise it, nobody must
            raise error from exc
        stdin = cast("asyncio.WriteTransport | None", transport.get_pipe_transport(0))
        if stdin is None:
            transport.close()
            self._starting = None
            starting.set_exception(StoreError("the spool writer has no input pipe"))
            starting.exception()
            raise StoreError("the spool writer has no input pipe")
        with contextlib.suppress(OSError, AttributeError):  # Linux: room for big bodies
            fcntl.fcntl(stdin.get_extra_info("pipe").fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        stdin.write(self._ring)
        self._transport, self._stdin, self._starting = transport, stdin, None
        starting.set_result(None)

    def acked(self, acks: list[Any]) -> None:
        """Complete the futures of acked bodies (the protocol calls this)."""
        pending = self._pending
        for ack in acks:
            future = pending.pop(ack.seq, None)
            if future is None or future.done():
                continue
            if ack.ok:
                future.set_result((ack.digest, ack.seal))
            else:
                future.set_exception(StoreError(ack.reason))

    def lost(self, reason: str, transport: asyncio.BaseTransport | None = None) -> None:
        """Fail every body not acked; the next body starts a new writer. From the
        protocol of a writer that is no longer ours (closed), nothing happens."""
        if transport is not None and transport is not self._transport:
            return
        if self._transport is not None:
            logger.error("%s", reason)
            _close_and_reap(self._transport)
        self._transport = self._stdin = None
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(StoreError(f"{reason}: the body was not recorded"))

    def close(self) -> None:
        """Close the writer's input: it writes what it has and exits (bodies it has
        not acked fail)."""
        pending, self._pending, self._queued = self._pending, {}, []
        for future in pending.values():
            if not future.done():
                future.set_exception(StoreError("the spool writer was closed"))
        stdin, self._stdin = self._stdin, None
        transport, self._transport = self._transport, None
        if stdin is not None:
            with contextlib.suppress(Exception):
                stdin.close()
        if transport is not None:
            child = transport.get_extra_info("subprocess")
            if child is not None:  # it writes what it has and exits
                with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                    child.wait(CLOSE_WAIT)
            _close_and_reap(transport)  # its pipes released now: the loop may not run again


def _close_and_reap(transport: asyncio.BaseTransport) -> None:
    """Close a writer's transport (which kills its process if it still runs) and reap
    the process here: the loop's child watcher may never report it (the loop closes
    first), and a process left unreaped behind a dropped handle is a zombie."""
    child = transport.get_extra_info("subprocess")
    with contextlib.suppress(Exception):
        transport.close()
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            child.wait(CLOSE_WAIT)
