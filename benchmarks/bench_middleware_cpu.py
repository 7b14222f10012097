"""Event-loop CPU per request: the same Starlette endpoint bare and under GuardMiddleware.

No server and no sockets: ASGI calls in one process, 32 at a time, timed by the CPU time
of the event loop's thread (``time.thread_time``), which is what a one-worker uvicorn
spends of its core on each request beyond the HTTP parsing it does for the bare app
too. The spool writer (the native writer thread by default) and the indexer are real;
the indexer mode defaults to ``none`` here so the spool is not indexed during the run.

    .venv/bin/python benchmarks/bench_middleware_cpu.py [--requests 20000] [--body 1024]

Prints the loop-thread CPU per request of each side and the difference, per round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

Scope = dict[str, Any]


def _api_key(home: Path) -> str:
    cli = str(Path(sys.executable).with_name("kairo-guard"))
    env = dict(os.environ, KAIRO_GUARD_HOME=str(home))
    subprocess.run([cli, "keys", "init"], env=env, check=True, capture_output=True)
    out = subprocess.run(
        [cli, "tenants", "add", "acme"], env=env, check=True, capture_output=True, text=True
    )
    found = re.search(r"kgk\.[A-Za-z0-9._-]+", out.stdout + out.stderr)
    if found is None:
        raise SystemExit("no API key in the output of 'kairo-guard tenants add'")
    return found.group(0)


def _scope(body: bytes, key: str) -> Scope:
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", b"Bearer " + key.encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/ingest",
        "raw_path": b"/ingest",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


async def _run(app: Callable[..., Any], scope: Scope, body: bytes, n: int) -> float:
    """Loop-thread CPU microseconds per request over ``n`` requests, 32 at a time."""

    async def one() -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            return None

        await app(dict(scope), receive, send)

    start = time.thread_time()
    for _ in range(0, n, 32):
        await asyncio.gather(*(one() for _ in range(32)))
    return (time.thread_time() - start) / n * 1e6


async def _main(o: argparse.Namespace) -> None:
    import mw_bench_apps

    body = b'{"text":"' + b"x" * max(0, o.body - 12) + b'"}'
    scope = _scope(body, o.key)
    bare, guarded = mw_bench_apps.bare, mw_bench_apps.guarded
    await _run(bare, scope, body, 2000)  # warm-up: imports, the writer, the key cache
    await _run(guarded, scope, body, 2000)
    diffs = []
    for r in range(o.rounds):
        b = await _run(bare, scope, body, o.requests)
        g = await _run(guarded, scope, body, o.requests)
        diffs.append(g - b)
        print(f"round {r + 1}: bare {b:.1f} us, guarded {g:.1f} us, +{g - b:.1f} us a request")
    print(f"median extra loop-thread CPU: {statistics.median(diffs):.1f} us a request")
    guarded.spool.close()
    await asyncio.sleep(0.5)  # the writer exits on its closed input; its pipes close here


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--body", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--indexer", default="none", choices=["process", "thread", "none"])
    o = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["KAIRO_GUARD_HOME"] = str(home)
        os.environ["KAIRO_GUARD_INDEXER"] = o.indexer
        o.key = _api_key(home)
        asyncio.run(_main(o))


if __name__ == "__main__":
    main()
