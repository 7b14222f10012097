"""Instructions per request under uvicorn's HTTP protocol, counted: the ratio's floor without noise.

The request rate under ``wrk`` moves 5-10% between runs of the same app on a shared
machine, more than the gap between a middleware and the floor it is compared with.
Instructions do not: ``valgrind --tool=callgrind`` counts them, the same for the same
code and inputs whatever else the machine does. Here uvicorn's own ``H11Protocol``
(what ``python -m uvicorn`` serves with when httptools is not installed; ``--http
httptools --loop uvloop`` for what it serves with ``uvicorn[standard]``) is fed
keep-alive ``POST /ingest`` requests of a 1 KiB JSON body on 32 connections through an
in-memory transport: request parsing, the ASGI app, response serialization and the
event loop are all real; only the sockets are missing (their system calls cost bare and
guarded alike). Each app of ``mw_bench_apps`` (``bare``, ``wrapped``, ``suspended``,
``unwritten``, ``stepped``, ``guarded``) runs under callgrind twice, for N and 3N requests, and the
difference of the event loop thread's instruction counts over 2N is its cost per
request; the ratio is bare's cost over the app's, as a request rate ratio would be
if every instruction took the same time.

Under valgrind a program runs about 50 times slower, so the middleware's time-based
caches (the API key's 1 s freshness, the 10 ms re-check of the spool's backlog, the
0.2 s backlog measurement) would expire 50 times as often per request as in service,
and a turn's 0.4 ms slice of completions would hold a fiftieth of the requests; they
are stretched by the same factor here. The spool writer thread is real (its
instructions are its own thread's and not counted: it runs on the other core).

    .venv/bin/python benchmarks/bench_middleware_instructions.py [--requests 1000] [--apps a,b]
        [--http h11|httptools] [--loop asyncio|uvloop]

Needs ``valgrind`` (every machine of this kind has it); takes about a minute per app.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APPS = ("bare", "wrapped", "suspended", "unwritten", "stepped", "guarded")
SLOWDOWN = 50.0
"""About how much slower a program runs under callgrind (time-based caches stretched)."""
CONNECTIONS = 32


def _drive(app_name: str, requests: int, key: str, http: str, loop_kind: str) -> None:
    """Serve ``requests`` requests to ``app_name`` through uvicorn's HTTP protocol (the
    child run under callgrind); 500 first to warm up."""
    sys.path[:0] = [str(HERE)]
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    module, name = (
        ("httptools_impl", "HttpToolsProtocol")
        if http == "httptools"
        else ("h11_impl", "H11Protocol")
    )
    Protocol: Any = getattr(importlib.import_module(f"uvicorn.protocols.http.{module}"), name)

    from kairo_guard.ingest import fast_path, spool_native, spooling

    fast_path.BUSY_RECHECK *= SLOWDOWN
    spooling.BACKLOG_EVERY *= SLOWDOWN
    spool_native.COMPLETION_SLICE_NS = int(spool_native.COMPLETION_SLICE_NS * SLOWDOWN)
    import mw_bench_apps

    app = getattr(mw_bench_apps, app_name)
    verifier = getattr(app, "_verifier", None)
    if verifier is not None:
        verifier._fresh *= SLOWDOWN  # the key's 1 s freshness, stretched
    body = b'{"text":"' + b"x" * 1012 + b'"}'
    request = (
        b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
    ) % (key.encode(), len(body), body)

    refused: list[bytes] = []
    ended: list[bool] = []  # the last run is over: its requests still in flight are cancelled

    class Transport(asyncio.Transport):
        def __init__(self, port: int, answered: Any) -> None:
            super().__init__()
            self.port, self.answered, self.closed = port, answered, False

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            peers = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", self.port)}
            return peers.get(name, default)

        def write(self, data: bytes | bytearray | memoryview) -> None:
            head = bytes(data[:12])
            if head.startswith(b"HTTP/1.1 ") and head != b"HTTP/1.1 201" and not ended:
                refused.append(head)  # counted, and fails the run: not the path measured
            if bytes(data[-1:]) == b"}":  # the JSON answer: the response is complete
                self.answered()

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

        def pause_reading(self) -> None:
            pass

        def resume_reading(self) -> None:
            pass

    async def serve(n: int) -> None:
        loop = asyncio.get_running_loop()
        config = Config(app=app, log_level="warning", access_log=False, lifespan="off")
        config.load()
        state = ServerState()
        done = loop.create_future()
        count = [0]
        for port in range(40000, 40000 + CONNECTIONS):
            protocol = Protocol(config, state, {}, loop)

            def answered(protocol: Any = protocol) -> None:
                count[0] += 1
                if count[0] == n and not done.done():
                    done.set_result(None)
                elif count[0] < n:  # the connection's next request
                    loop.call_soon(protocol.data_received, request)

            protocol.connection_made(Transport(port, answered))
            loop.call_soon(protocol.data_received, request)
        await done

    async def main() -> None:
        await serve(500)
        await serve(requests)
        ended.append(True)

    if loop_kind == "uvloop":
        importlib.import_module("uvloop").install()  # (not a dependency: when installed)
    asyncio.run(main())
    if refused:
        raise SystemExit(f"{len(refused)} responses were not 201, e.g. {refused[0]!r}")


def _count(app: str, requests: int, o: argparse.Namespace, env: dict[str, str], tmp: Path) -> int:
    """Instructions of the main thread of one callgrind run."""
    out = tmp / f"cg.{app}.{requests}"
    cmd = [
        "valgrind", "--tool=callgrind", "--separate-threads=yes",
        f"--callgrind-out-file={out}", sys.executable, __file__,
        "--child", app, "--requests", str(requests), "--key", o.key,
        "--http", o.http, "--loop", o.loop,
    ]  # fmt: skip
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{app} failed under callgrind:\n{run.stderr[-2000:]}")
    main = Path(f"{out}-01").read_text()  # thread 1: the event loop's
    found = re.search(r"^(?:summary|totals): (\d+)", main, re.MULTILINE)
    if found is None:
        raise SystemExit(f"no instruction total in {out}-01")
    return int(found.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--apps", default=",".join(APPS))
    p.add_argument("--http", default="h11", choices=["h11", "httptools"])
    p.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    o = p.parse_args()
    if o.child:
        _drive(o.child, o.requests, o.key, o.http, o.loop)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    sys.path[:0] = [str(HERE)]
    import bench_middleware as bench
    import machine_info

    print(machine_info.machine(), flush=True)
    apps = ["bare", *dict.fromkeys(a for a in o.apps.split(",") if a and a != "bare")]
    with tempfile.TemporaryDirectory(prefix="kg-instr-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        o.key = bench.make_state(sys.executable, home)
        env = dict(os.environ, KAIRO_GUARD_HOME=str(home), KAIRO_GUARD_INDEXER="none")
        per: dict[str, float] = {}
        for app in apps:
            low = _count(app, o.requests, o, env, tmp)
            high = _count(app, 3 * o.requests, o, env, tmp)
            per[app] = (high - low) / (2 * o.requests)
            ratio = per["bare"] / per[app]
            print(
                f"{app:10s} {per[app]:10,.0f} instructions a request  ratio {ratio:.3f}", flush=True
            )
    print(json.dumps({"instructions_per_request": per}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
