"""Instructions per request of the guard's tracing, counted by valgrind (callgrind).

On a shared VM the request-level timings of ``bench_otel.py`` move by tens of
microseconds between runs; instruction counts do not (the same binary, inputs and
environment give the same count, whatever the neighbours do). This script runs each
side of ``bench_otel.py``'s request benchmark in a child process under
``valgrind --tool=callgrind`` twice, with ``base`` and ``base + requests`` requests after
the same set-up, and reports the difference divided by ``requests``: the instructions
of one request, set-up and start-up cancelled out. Sides (as in ``bench_otel.py``):

* ``off``: the guard without an SDK; ``bare``: the same under one bare SDK span per
  request (``start_span()`` + ``end()``); ``batch``: the guard on an SDK provider
  (BatchSpanProcessor), making its own ``kairo_guard.request`` span; ``host``: a
  host's SERVER span around the guard without SDK; ``host+ours``: the same host span,
  the guard on the same provider putting its decision on it.

Instructions are not time (cache misses and the VM's steal are not in them); to read
them as time, the script also times the ``off`` side natively and converts with that
side's own instructions per microsecond, reported as an estimate.

Run: ``.venv/bin/python benchmarks/count_otel.py`` (needs ``valgrind``; about 15
minutes on one core; ``--help`` for options). Not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench_otel
import machine_info

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("tests/support", "examples")]
from kg_testing import make_guard

from kairo_guard import KeyRing

SIDES = ("off", "bare", "batch", "host", "host+ours")
COMPARED = {"bare": "off", "batch": "off", "host": "off", "host+ours": "host"}
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _app(side: str, home: Path) -> tuple[Any, Any]:
    """The ASGI app of ``side`` and its tracer provider."""
    ring = KeyRing.generate()
    provider, _ = bench_otel._provider("batch")

    if side in ("batch", "host+ours"):
        guard = bench_otel._traced_guard(home / "on", ring, provider)
    else:
        guard = make_guard(home / "off", ring=ring, pii_gate=False)
    app: Any = bench_otel._middleware(guard)
    if side == "bare":
        app = bench_otel.BareSpan(app, provider)
    elif side.startswith("host"):
        app = bench_otel.HostServerSpan(app, provider)
    return app, provider


def child(side: str, warmup: int, requests: int) -> None:
    """Run ``warmup`` then ``requests`` requests of ``side`` (inside valgrind)."""
    with tempfile.TemporaryDirectory(prefix="kg-count-otel-") as tmp:
        app, provider = _app(side, Path(tmp))
        asyncio.run(bench_otel._requests(app, warmup))
        if requests:
            asyncio.run(bench_otel._requests(app, requests))
        provider.shutdown()


def _count(side: str, warmup: int, requests: int) -> int:
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", side, str(warmup), str(requests),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    match = _COLLECTED.search(done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def _native_off(requests: int, blocks: int) -> float:
    """Median wall-clock us per request of the ``off`` side, natively."""
    with tempfile.TemporaryDirectory(prefix="kg-count-otel-") as tmp:
        app, provider = _app("off", Path(tmp))
        asyncio.run(bench_otel._requests(app, 200))
        times = [asyncio.run(bench_otel._requests(app, requests))[0] for _ in range(blocks)]
        provider.shutdown()
    return statistics.median(times) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=1000, help="requests counted per side")
    p.add_argument("--base", type=int, default=300, help="requests of the shorter run")
    p.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    p.add_argument("--cpu", type=int, help="CPU to pin to (default: the last allowed one)")
    p.add_argument("--json", action="store_true", help="JSON on stdout (the table on stderr)")
    p.add_argument("--child", nargs=3, metavar=("SIDE", "WARMUP", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return 0
    if shutil.which("valgrind") is None:
        p.error("valgrind is not installed")
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1] if args.cpu is None else args.cpu
        os.sched_setaffinity(0, {cpu})  # children inherit it
    sides = [s for s in SIDES if s in args.sides or s in {COMPARED.get(x) for x in args.sides}]
    per_request: dict[str, float] = {}
    for side in sides:
        short = _count(side, 200, args.base)
        long = _count(side, 200, args.base + args.requests)
        per_request[side] = (long - short) / args.requests
    off_us = _native_off(300, 15)
    rate = per_request["off"] / off_us if "off" in per_request else None
    rows: dict[str, Any] = {}
    for side in sides:
        row: dict[str, Any] = {"instructions_per_request": round(per_request[side])}
        base = COMPARED.get(side)
        if base in per_request:
            added = per_request[side] - per_request[base]
            row.update(compared_with=base, instructions_added=round(added))
            if rate:
                row["us_added_estimate"] = round(added / rate, 1)
        rows[side] = row
    if {"bare", "batch"} <= rows.keys():
        beyond = per_request["batch"] - per_request["bare"]
        rows["batch"]["instructions_beyond_bare_span"] = round(beyond)
        if rate:
            rows["batch"]["us_beyond_bare_span_estimate"] = round(beyond / rate, 1)
    say = sys.stderr if args.json else sys.stdout
    say.write(
        f"instructions per request (callgrind; {args.requests} requests counted); off side "
        f"natively {off_us:.1f} us/request = {rate or 0:.0f} instructions/us\n"
    )
    for side, row in rows.items():
        line = f"  {side}: {row['instructions_per_request']:,}"
        if "instructions_added" in row:
            line += f" -> +{row['instructions_added']:,} vs {row['compared_with']}"
            line += f" (~{row.get('us_added_estimate', '?')} us)"
        if "instructions_beyond_bare_span" in row:
            line += (
                f"; beyond a bare SDK span: +{row['instructions_beyond_bare_span']:,}"
                f" (~{row.get('us_beyond_bare_span_estimate', '?')} us)"
            )
        say.write(line + "\n")
    if args.json:
        source_hash, _ = machine_info.library_state()
        doc = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine_info.machine(),
            "sources": source_hash,
            "off_us_per_request_native": round(off_us, 1),
            "sides": rows,
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
