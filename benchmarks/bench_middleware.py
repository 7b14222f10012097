"""GuardMiddleware throughput: the same Starlette endpoint bare and guarded, side by side.

Each app is served by uvicorn with one worker and loaded by ``wrk`` (a separate process,
32 connections) with JSON bodies ``{"text": "..."}`` of 1 KiB and 64 KiB (filler ``x``
as the measuring harness sends, and optionally prose). Bare and guarded alternate over
rounds; every server gets a warm-up load that is not counted. Per round it reports
req/s, non-2xx answers and the guarded/bare ratio, and per body the median ratio against
the targets (>= 0.95x at 1 KiB, >= 0.85x at 64 KiB). After each guarded round it reports
the index lag (spool backlog bytes and segments when the load stops) and the wall time
until the backlog is indexed (polled; with ``KAIRO_GUARD_INDEXER=none`` a guard of this
process drains it).

Needs ``wrk`` (Debian: ``apt-get install -y wrk``). The state directory (key, tenant
``acme`` and its API key) is made here, in a temporary directory removed at the end;
every server and indexer process started is ended by pid. Other processes on the
machine distort the numbers: run it when the machine is quiet.

Run: ``.venv/bin/python benchmarks/bench_middleware.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

import machine_info

from kairo_guard.store.spool import backlog

TARGETS = {1024: 0.95, 65536: 0.85}
"""Body size -> the guarded/bare ratio the middleware should reach."""
APPS = {"ours": (str(HERE), "mw_bench_apps"), "shared": (None, "mw_apps")}
VOCABULARY = (
    "the quarterly plan covers warehouses hiring supplier terms and the new battery line "
    "while the board reviews pricing for the Lisbon plant before October customers expect "
    "shipments on time engineers report cooling faults in Porto and a contract renewal "
    "depends on audit findings that nobody has summarised yet for the regional team"
)


def body_of(size: int, text: str) -> str:
    """A JSON body of ``size`` bytes: filler (as the measuring harness sends) or prose."""
    room = max(0, size - 12)
    if text == "filler":
        return '{"text":"' + "x" * room + '"}'
    rnd = random.Random(size)
    words: list[str] = []
    length = 0
    while length < room:
        sentence = (
            " ".join(rnd.choices(VOCABULARY.split(), k=rnd.randint(8, 20))).capitalize() + ". "
        )
        words.append(sentence)
        length += len(sentence)
    return '{"text":"' + "".join(words)[:room] + '"}'


def wrk_script(body: str, key: str) -> str:
    """A wrk script POSTing ``body`` as JSON with the tenant's API key."""
    return (
        f'wrk.method = "POST"\nwrk.body = [[{body}]]\n'
        f'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_state(python: str, home: Path) -> str:
    """Create the key and tenant ``acme``; return its API key."""
    env = dict(os.environ, KAIRO_GUARD_HOME=str(home))
    cli = [python, "-c", "from kairo_guard.cli.main import main; raise SystemExit(main())"]
    subprocess.run([*cli, "keys", "init"], env=env, check=True, capture_output=True)
    out = subprocess.run([*cli, "tenants", "add", "acme"], env=env, check=True, capture_output=True)
    found = re.search(r"kgk\.[A-Za-z0-9._-]+", out.stdout.decode() + out.stderr.decode())
    if found is None:
        raise SystemExit("kairo-guard tenants add printed no API key")
    return found.group(0)


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _alive(pid: int, marker: str) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@contextlib.contextmanager
def serving(python: str, app: str, env: dict[str, str], log: Path) -> Iterator[tuple[int, int]]:
    """Run uvicorn (one worker) on a free port; yield (pid, port). On exit: SIGINT, then
    SIGKILL of its process group, and its indexer children (groups of their own) by pid."""
    port = free_port()
    cmd = [python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--log-level", "warning", "--no-access-log"]
    with open(log, "ab") as err:  # stderr to a file: a full pipe cannot stall the server
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{app} did not start: {log.read_text()[-600:]}") from None
                time.sleep(0.1)
        yield proc.pid, port
    finally:
        children = children_of(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            print(f"  {app}: not stopped 30 s after SIGINT; killed", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 30  # the indexer drains, then exits at end of stdin
        for child in children:
            while _alive(child, "kairo_guard") and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(child, "kairo_guard"):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child, signal.SIGKILL)


def load(port: int, script: str, secs: float, conns: int) -> tuple[float, int, int]:
    """Run wrk; return (req/s, non-2xx answers, socket errors)."""
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{secs:g}s", "-s", script]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}/ingest"], capture_output=True, text=True, check=True
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise SystemExit(f"wrk printed no rate:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    failed = sum(int(n) for n in re.findall(r"\d+", errors.group(1))) if errors else 0
    return float(rps.group(1)), int(bad.group(1)) if bad else 0, failed


def drain(home: Path, mode: str, bound: float) -> tuple[float, bool]:
    """Wait until the spool's backlog is indexed; return (seconds, drained)."""
    start = time.perf_counter()
    if mode == "none":  # no indexer runs: this process indexes, as a shared sink would
        from kairo_guard import Guard
        from kairo_guard.core.exceptions import IndexLagging

        with Guard(home=home) as guard:
            try:
                guard.wait_indexed(bound)
            except IndexLagging:
                return time.perf_counter() - start, False
        return time.perf_counter() - start, True
    while backlog(home / "spool").pending_bytes:
        if time.perf_counter() - start > bound:
            return time.perf_counter() - start, False
        time.sleep(0.02)
    return time.perf_counter() - start, True


def run_app(kind: str, app: str, ctx: dict[str, Any], script: str) -> dict[str, Any]:
    o = ctx["args"]
    with serving(o.python, app, ctx["env"], ctx["log"]) as (_pid, port):
        load(port, script, o.warmup, o.conns)
        if kind == "guarded":  # each measured round starts from an indexed spool
            drain(ctx["home"], ctx["mode"], o.drain_timeout)
        rps, bad, failed = load(port, script, o.secs, o.conns)
        result: dict[str, Any] = {"rps": rps, "non_2xx": bad, "socket_errors": failed}
        result["loadavg_1m"] = os.getloadavg()[0]
        if kind == "guarded":
            lag = backlog(ctx["home"] / "spool")
            took, done = drain(ctx["home"], ctx["mode"], o.drain_timeout)
            result.update(
                lag_bytes=lag.pending_bytes, lag_segments=lag.segments, drain_s=took, drained=done
            )
    return result


def describe(row: dict[str, Any]) -> str:
    """One line for a round: both rates, failures, the ratio, the index lag."""

    def side(x: dict[str, Any]) -> str:
        errors = f", socket errors {x['socket_errors']}" if x["socket_errors"] else ""
        return f"{x['rps']:7.0f} req/s (non-2xx {x['non_2xx']}{errors})"

    g = row["guarded"]
    drained = "" if g["drained"] else " (NOT drained within the bound)"
    return (
        f"{row['size']:>6} B {row['text']:<6} round {row['round']}: bare {side(row['bare'])}, "
        f"guarded {side(g)}, ratio {row['ratio']:.3f}; lag {g['lag_bytes']:,} B in "
        f"{g['lag_segments']} segment(s), indexed in {g['drain_s']:.2f} s{drained}"
    )


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--secs", type=float, default=8, help="measured load per app and round")
    p.add_argument(
        "--warmup", type=float, default=8, help="load before it, not counted (as the harness)"
    )
    p.add_argument("--conns", type=int, default=32)
    p.add_argument("--sizes", default="1024,65536", help="body sizes in bytes")
    p.add_argument("--text", choices=("filler", "prose", "both"), default="filler")
    p.add_argument("--apps", choices=tuple(APPS), default="ours", help="ours: mw_bench_apps")
    p.add_argument("--apps-dir", default=str(HERE.parent.parent / "shared" / "tools"))
    p.add_argument("--python", default=sys.executable, help="the server's interpreter")
    p.add_argument("--indexer", choices=("process", "thread", "none"), default=None)
    p.add_argument("--drain-timeout", type=float, default=120)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return p.parse_args()


def main() -> int:
    o = parse()
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get update && apt-get install -y wrk", file=sys.stderr)
        return 2
    mode = o.indexer or os.environ.get("KAIRO_GUARD_INDEXER") or "process"
    apps_dir, module = APPS[o.apps]
    pythonpath = [apps_dir or o.apps_dir, os.environ.get("PYTHONPATH", "")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-mw-"))
    cases = [(int(s), t) for s in o.sizes.split(",") for t in ("filler", "prose")]
    cases = [c for c in cases if o.text in (c[1], "both")]
    rows: list[dict[str, Any]] = []
    try:
        home = tmp / "home"
        key = make_state(o.python, home)
        env = dict(os.environ, KAIRO_GUARD_HOME=str(home), KAIRO_GUARD_INDEXER=mode)
        env["PYTHONPATH"] = os.pathsep.join(p for p in pythonpath if p)
        ctx = {"args": o, "env": env, "home": home, "mode": mode, "log": tmp / "uvicorn.log"}
        print(
            f"apps {module} ({o.apps}), indexer {mode}, {o.conns} connections, "
            f"{o.secs:g} s measured after {o.warmup:g} s warm-up",
            flush=True,
        )
        for size, text in cases:
            script = tmp / f"body-{size}-{text}.lua"
            script.write_text(wrk_script(body_of(size, text), key))
            for r in range(1, o.rounds + 1):
                row: dict[str, Any] = {"size": size, "text": text, "round": r}
                for kind in ("bare", "guarded"):
                    row[kind] = run_app(kind, f"{module}:{kind}", ctx, str(script))
                row["ratio"] = row["guarded"]["rps"] / row["bare"]["rps"]
                rows.append(row)
                print(describe(row), flush=True)
    finally:
        log = tmp / "uvicorn.log"
        if log.exists() and log.stat().st_size:
            print(f"server stderr (last 1,000 chars):\n{log.read_text()[-1000:]}")
        shutil.rmtree(tmp, ignore_errors=True)
    summary = []
    for size, text in cases:
        ratios = [x["ratio"] for x in rows if (x["size"], x["text"]) == (size, text)]
        target = TARGETS.get(size)
        median = statistics.median(ratios)
        verdict = "-" if target is None else ("PASS" if median >= target else "MISS")
        summary.append(
            {
                "size": size,
                "text": text,
                "median_ratio": median,
                "target": target,
                "verdict": verdict,
            }
        )
        print(
            f"median guarded/bare at {size} B {text}: {median:.3f} "
            f"(target {target if target is not None else '-'}): {verdict}"
        )
    if o.json:
        Path(o.json).write_text(
            json.dumps(
                {
                    "command": " ".join([Path(sys.executable).name, *sys.argv]),
                    "indexer": mode,
                    "apps": module,
                    "rounds": rows,
                    "summary": summary,
                    "machine": machine_info.machine(),
                    "library_sources_sha256": machine_info.library_state()[0],
                    "loadavg": os.getloadavg(),
                },
                indent=2,
            )
        )
    missed = any(s["verdict"] == "MISS" for s in summary)
    return 1 if o.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
