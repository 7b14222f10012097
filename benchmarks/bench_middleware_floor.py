"""What any body-reading middleware costs, beside GuardMiddleware: the floor of the ratio.

Five apps around the same Starlette endpoint, each under uvicorn (one worker), all
running at once: ``bare``; ``wrapped`` (reads the body first, replays it to the app,
adds a response header); ``suspended`` (that and one wait on the event loop before the
app runs: the least that making a body durable elsewhere first can cost); ``unwritten``
(GuardMiddleware whose spool answers at once and writes nothing: its own event-loop
work); ``guarded`` (GuardMiddleware, its indexer off so no background work overlaps the
bursts). ``wrk``
loads them in short bursts, one app at a time in a new random order each pair; each
app's rate is divided by bare's of the same pair. The medians of those ratios show
how far the middleware is above what the design can reach. A noisy machine moves single
bursts by 10-20%: use many pairs.

Run: ``.venv/bin/python benchmarks/bench_middleware_floor.py [--pairs 20] [--secs 2]``
(needs ``wrk``; the state directory is temporary).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

import bench_middleware as bench
import machine_info

APPS = ("bare", "wrapped", "suspended", "unwritten", "guarded")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--secs", type=float, default=2)
    p.add_argument("--body", type=int, default=1024)
    p.add_argument("--conns", type=int, default=32)
    o = p.parse_args()
    print(machine_info.machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="kg-floor-") as tmp:
        home = Path(tmp) / "home"
        key = bench.make_state(sys.executable, home)
        script = Path(tmp) / "post.lua"
        script.write_text(bench.wrk_script(bench.body_of(o.body, "filler"), key))
        env = dict(os.environ, KAIRO_GUARD_HOME=str(home), KAIRO_GUARD_INDEXER="none")
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        log = Path(tmp) / "servers.log"
        with contextlib.ExitStack() as stack:
            ports = {
                app: stack.enter_context(
                    bench.serving(sys.executable, f"mw_bench_apps:{app}", env, log)
                )[1]
                for app in APPS
            }
            for port in ports.values():  # warm-up, not counted
                bench.load(port, str(script), 3, o.conns)
            rates: dict[str, list[float]] = {app: [] for app in APPS}
            for _ in range(o.pairs):
                for app in random.sample(APPS, len(APPS)):
                    rps, bad, failed = bench.load(ports[app], str(script), o.secs, o.conns)
                    if bad or failed:
                        print(f"  {app}: {bad} non-2xx, {failed} socket errors", flush=True)
                    rates[app].append(rps)
    print(f"{o.body} B bodies, {o.pairs} pairs of {o.secs:g} s bursts, {o.conns} connections")
    for app in APPS:
        ratios = [r / b for r, b in zip(rates[app], rates["bare"], strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        print(
            f"{app:>10}: median {statistics.median(rates[app]):7.0f} req/s, "
            f"ratio to bare median {statistics.median(ratios):.3f} (quartiles {q1:.3f}-{q3:.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
