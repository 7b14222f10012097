"""The spool writers side by side: bodies/s made durable, and the event loop's CPU a body.

``IngestSpool.record`` from one event loop, 32 bodies in flight, against the native
writer thread (the default), the writer process (``spool_main``) and the Python writer
thread, alternated over rounds on
one state directory per round (no indexer). Prints, per body size and round, each
writer's bodies/s, MB/s and the loop thread's CPU per body (``time.thread_time``; it
includes this script's own task bookkeeping, the same for all).

    .venv/bin/python benchmarks/bench_spool_writer.py [--sizes 1024,65536] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


async def _measure(home: Path, writer: str, size: int, n: int) -> tuple[float, float]:
    from kairo_guard import Guard
    from kairo_guard.ingest.spooling import IngestSpool

    body = b'{"text":"' + b"x" * (size - 12) + b'"}'
    with Guard(home=home) as guard:
        spool = IngestSpool(guard, indexer="none", writer=writer)
        await spool.record("acme", [body], "http", b"POST /ingest")  # start the writer
        slots = asyncio.Semaphore(32)

        async def one() -> None:
            async with slots:
                await spool.record("acme", [body], "http", b"POST /ingest")

        start, cpu = time.perf_counter(), time.thread_time()
        await asyncio.gather(*(one() for _ in range(n)))
        wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
        spool.close()
        await asyncio.sleep(0.5)  # the writer process exits on its closed input
    return n / wall, cpu / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1024,65536")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--megabytes", type=int, default=600, help="spooled per writer and round")
    o = p.parse_args()
    cli = str(Path(sys.executable).with_name("kairo-guard"))
    for size in (int(s) for s in o.sizes.split(",")):
        n = max(2000, o.megabytes * 1_000_000 // size)
        rates: dict[str, list[float]] = {"native": [], "process": [], "thread": []}
        for r in range(o.rounds):
            for writer in rates:
                with tempfile.TemporaryDirectory() as tmp:
                    home = Path(tmp) / "home"
                    env = dict(os.environ, KAIRO_GUARD_HOME=str(home))
                    subprocess.run([cli, "keys", "init"], env=env, check=True, capture_output=True)
                    rate, cpu = asyncio.run(_measure(home, writer, size, n))
                rates[writer].append(rate)
                print(f"{size:>6} B round {r + 1} {writer:<7}: {rate:8.0f} bodies/s, "
                      f"{rate * size / 1e6:6.0f} MB/s, loop CPU {cpu:5.1f} us a body",
                      flush=True)  # fmt: skip
        native = statistics.median(rates["native"])
        for other in ("process", "thread"):
            ratio = native / statistics.median(rates[other])
            print(f"{size:>6} B median native/{other}: {ratio:.2f}")


if __name__ == "__main__":
    main()
