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

from kairo_guard.core.keys import KeyRing
from kairo_guard.guard import Guard
from kairo_guard.ingest.spool_wire import ack, nack, read_requests, read_ring
from kairo_guard.store.spool import SegmentAppender, body_parts

READ_BYTES = 8 << 20


def serve(guard: Guard, stdin: int, stdout: int) -> None:
    """Spool what arrives on ``stdin`` until it ends; ack each body on ``stdout``."""
    segments = SegmentAppender(guard.spool_directory)
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
            error = segments.append(records)
            if error is not None:
                acks = [nack(int.from_bytes(a[:8], "little"), error) for a in acks]
            _write_all(stdout, b"".join(acks))
    finally:
        segments.close()


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
