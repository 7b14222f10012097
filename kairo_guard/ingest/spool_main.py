"""The spool writer as a process of its own (started by :class:`IngestSpool`).

``python -m kairo_guard.ingest.spool_main --home DIR [--config FILE]`` reads the key ring
of the service that started it, then bodies, from its standard input
(:mod:`kairo_guard.ingest.spool_wire`); it digests and seals each body (with the guard
of the state directory), appends what one read brought to its spool segment with one
``fdatasync`` (group commit), then acks each body on its standard output. It exits at
the end of its input. A service process thereby spends on a body only a pipe write and
an ack: hashing, sealing and the disk are here, on another core, under another
interpreter lock.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import threading
import time

from kairo_guard.core.keys import KeyRing
from kairo_guard.guard import Guard
from kairo_guard.ingest.spool_wire import ack, nack, read_requests, read_ring
from kairo_guard.store.spool import body_parts
from kairo_guard.store.spool_append import SegmentAppender

READ_BYTES = 8 << 20
GATHER_BELOW = 64 << 10
GATHER_SECONDS = 0.0002


def serve(guard: Guard, stdin: int, stdout: int) -> None:
    """Spool what arrives on ``stdin`` until it ends; ack each body on ``stdout``.

    Two stages overlap: this thread reads, digests, seals and writes each batch; a
    syncer thread makes what was written durable (one ``fdatasync`` for everything
    written since its last) and acks it, so the disk works while the next batch is
    hashed.
    """
    segments = SegmentAppender(guard.spool_directory)
    syncer = _Syncer(segments, stdout)
    syncer.start()
    seal = guard.sealer.seal_spooled
    buffer = bytearray()
    try:
        while data := os.read(stdin, READ_BYTES):
            buffer += data
            records: list[bytes] = []
            acks: list[bytes] = []
            for request in read_requests(buffer):
                digest = hashlib.sha256(request.body).hexdigest()
                try:
                    sealed = (
                        seal(digest, tenant=request.tenant, source=request.source)
                        if request.source
                        else ""
                    )
                except ValueError as exc:
                    acks.append(nack(request.seq, f"cannot seal the body: {exc}"))
                    continue
                records += body_parts(request.tenant, sealed, request.body, request.meta)
                acks.append(ack(request.seq, digest, sealed))
            error, segment = segments.write(records) if records else (None, 0)
            syncer.put(acks, error, segment)
            if len(data) < GATHER_BELOW:  # let more bodies gather: fewer wake-ups
                time.sleep(GATHER_SECONDS)
    finally:
        syncer.stop()
        segments.close()


class _Syncer(threading.Thread):
    """Makes written batches durable and acks them (nacks, if a batch was not written
    or its segment could not be synced)."""

    def __init__(self, segments: SegmentAppender, out: int) -> None:
        super().__init__(name="kairo-guard-spool-sync", daemon=True)
        self._segments = segments
        self._out = out
        self._queue: list[tuple[list[bytes], str | None, int]] = []
        self._ready = threading.Condition()
        self._stopping = False
        self._failed_upto = 0  # segments up to this one failed a sync: never acked

    def put(self, acks: list[bytes], error: str | None, segment: int) -> None:
        with self._ready:
            self._queue.append((acks, error, segment))
            self._ready.notify()

    def stop(self) -> None:
        """Sync and ack what is queued, then end."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self.join()

    def run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue:
                    return
                batches, self._queue = self._queue, []
            failure, covers = self._segments.sync()  # after the batches: it covers them
            if failure is not None:
                self._failed_upto = max(self._failed_upto, covers)
            out: list[bytes] = []
            for acks, error, segment in batches:
                if error is None and segment <= self._failed_upto:
                    error = failure or "the spool could not be synced"
                out += acks if error is None else [_nacked(a, error) for a in acks]
            try:
                _write_all(self._out, b"".join(out))
            except OSError:  # the service is gone: nothing waits for these acks
                return


def _nacked(acked: bytes, reason: str) -> bytes:
    return nack(int.from_bytes(acked[:8], "little"), reason)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main(argv: list[str] | None = None) -> int:
    """Run the writer until standard input ends."""
    parser = argparse.ArgumentParser(prog="kairo_guard.ingest.spool_main")
    parser.add_argument("--home", required=True)
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the server
    ring = KeyRing.from_json(read_ring(sys.stdin.fileno()))
    with Guard(home=args.home, config_file=args.config, key=ring) as guard:
        serve(guard, sys.stdin.fileno(), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
