"""Load test: several uvicorn workers ingesting on one PostgreSQL store, then an audit
of what was accepted.

Loopback only, bounded in time. A fresh PostgreSQL schema (on the machine's server,
127.0.0.1:5432, database ``test``) and a fresh state directory; ``--tenants`` tenants
with an API key each; ``uvicorn --workers N`` serving one Starlette endpoint that reads
the JSON body, behind ``GuardMiddleware`` (each worker has its own spool writer and
segment; one indexer process at a time indexes the spool into PostgreSQL). Load comes
from ``--procs`` separate client processes holding ``--clients`` connections in all, each
connection posting as one tenant (round robin over the tenants), for ``--seconds``.

Afterwards (the server stopped with SIGTERM, so it indexes what it accepted, then the
index waited for): every 2xx answer's ``kairo-provenance`` seal must open, name the
tenant the request authenticated as, and its digest must be among that tenant's
provenance rows in the store and no other tenant's; every other answer must be 413 or
503 (by design); the audit log must verify against its anchor. Reported: requests/s,
latency p50/p99, status counts, the index lag when the load stopped and how long it
took to drain, and the workers' resident memory over the run (sampled every 5 s).

Run: ``.venv/bin/python benchmarks/load_pg.py [--seconds 60] [--workers 4]
[--clients 52] [--tenants 20]``. Exits 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine_info

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
APP = """
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from kairo_guard import Guard, GuardMiddleware

async def ingest(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"bytes": len(body)}, status_code=201)

def create():
    inner = Starlette(routes=[Route("/documents", ingest, methods=["POST"])])
    return GuardMiddleware(inner, guard=Guard())
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes
) -> tuple[int, dict[bytes, bytes]]:
    """One HTTP/1.1 POST on a kept-alive connection: status and headers (lowercased)."""
    writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, headers


def _client(args: tuple[int, list[tuple[str, str]], float, int, int]) -> dict[str, Any]:
    """One load process: its connections post until the deadline; returns outcomes.
    (A small HTTP/1.1 client of its own: httpx spent the load processes' CPU.)"""
    port, assigned, deadline, size, seed = args
    out: dict[str, Any] = {"codes": Counter(), "lat": [], "accepted": []}

    async def one(tenant: str, key: str, n: int) -> None:
        head = (f"POST /documents HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}"
                "\r\nContent-Type: application/json\r\n").encode()  # fmt: skip
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = 0
        while time.time() < deadline:
            text = f"{tenant} document {seed}-{n}-{i} {uuid.uuid4().hex} "
            body = {"title": f"doc {i}", "text": (text * (size // len(text) + 1))[:size]}
            t0 = time.perf_counter()
            try:
                status, headers = await _post(reader, writer, head, json.dumps(body).encode())
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                out["codes"][f"error:{type(exc).__name__}"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            out["lat"].append(time.perf_counter() - t0)
            out["codes"][status] += 1
            if 200 <= status < 300:
                seal = headers.get(b"kairo-provenance", b"").decode()
                out["accepted"].append((tenant, seal))
            if headers.get(b"connection") == b"close":
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            i += 1
        writer.close()

    async def run() -> None:
        await asyncio.gather(*(one(t, k, n) for n, (t, k) in enumerate(assigned)))

    asyncio.run(run())
    return out


def _rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def _tree(pid: int) -> list[int]:
    """``pid``'s descendants (the workers and what they start, such as the indexer)."""
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    for marker in ("indexer_main", "spool_main", "resource_tracker", "uvicorn"):
        if marker in text:
            return marker
    return text[:40]


def _sample(root: int, seen: dict[int, list[int]]) -> None:
    """Add each descendant's resident memory now to ``seen`` (pid -> samples)."""
    for pid in _tree(root):
        seen.setdefault(pid, []).append(_rss([pid]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--clients", type=int, default=52)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--tenants", type=int, default=20)
    p.add_argument("--body", type=int, default=1024)
    p.add_argument("--sqlite", action="store_true", help="the embedded store instead, to compare")
    o = p.parse_args()
    print(machine_info.machine(), flush=True)

    from kairo_guard import Guard, verify_audit
    from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD
    from kairo_guard.ingest.apikeys import new_api_key

    schema = f"kg_load_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    work = Path(tempfile.mkdtemp(prefix="kg-load-"))
    (work / "load_app.py").write_text(APP)
    home = work / "state"
    db_url = f"{PG_SERVER}?options=-csearch_path%3D{schema}"
    env = {**os.environ, "KAIRO_GUARD_HOME": str(home), "KAIRO_GUARD_DB_URL": db_url}
    if o.sqlite:
        del env["KAIRO_GUARD_DB_URL"]
    ok = True
    try:
        subprocess.run([sys.executable, "-m", "kairo_guard.cli.main", "keys", "init"],
                       env=env, check=True, capture_output=True)  # fmt: skip
        with Guard(home=home, env=env) as guard:
            tenants = [(f"load-tenant-{i:02d}", new_api_key(guard.store, f"load-tenant-{i:02d}"))
                       for i in range(o.tenants)]  # fmt: skip
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "load_app:create", "--factory", "--port",
             str(port), "--workers", str(o.workers), "--log-level", "warning",
             "--no-access-log"],
            cwd=work, env=env, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/documents"
        for _ in range(200):
            try:
                if httpx.post(url, json={}, timeout=2).status_code == 401:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        workers = _children(server.pid) if o.workers > 1 else [server.pid]
        rss = [(0.0, _rss(workers))]
        per_process: dict[int, list[int]] = {}
        roles = {pid: _role(pid) for pid in _tree(server.pid)}
        _sample(server.pid, per_process)
        start = time.time()
        deadline = start + o.seconds
        conns = [tenants[i % len(tenants)] for i in range(o.clients)]
        jobs = [(port, conns[k :: o.procs], deadline, o.body, k) for k in range(o.procs)]
        with multiprocessing.get_context("spawn").Pool(o.procs) as pool:
            pending = pool.map_async(_client, jobs)
            while not pending.ready():
                pending.wait(5)
                rss.append((time.time() - start, _rss(workers)))
                _sample(server.pid, per_process)
                roles.update({pid: _role(pid) for pid in per_process if pid not in roles})
            results = pending.get()
        took = time.time() - start
        stop = time.time()
        os.killpg(server.pid, signal.SIGTERM)  # lifespan: spools closed, indexer indexes
        server.wait(timeout=300)
        codes: Counter[Any] = Counter()
        lat: list[float] = []
        accepted: list[tuple[str, str]] = []
        for r in results:
            codes.update(r["codes"])
            lat += r["lat"]
            accepted += r["accepted"]
        with Guard(home=home, env=env) as guard:
            guard.wait_indexed(timeout=600)
            drained = time.time() - stop
            by_tenant = {t: {row.digest for row in guard.store.list_provenance(t)}
                         for t, _ in tenants}  # fmt: skip
            owner: dict[str, set[str]] = {}
            for t, digests in by_tenant.items():
                for d in digests:
                    owner.setdefault(d, set()).add(t)
            missing = mixed = unsealed = 0
            for tenant, seal in accepted:
                try:
                    label = guard.open_seal(seal)
                except Exception:  # noqa: BLE001 - counted: a 2xx without a valid seal
                    unsealed += 1
                    continue
                if label.tenant != tenant or owner.get(label.digest, {tenant}) != {tenant}:
                    mixed += 1
                elif label.digest not in by_tenant[tenant]:
                    missing += 1
            keys = guard.keys.subkeys(PURPOSE_AUDIT_HEAD)
            audit = verify_audit(
                home / "audit", keys, guard.store.get_audit_anchor(guard.settings.audit_log_id)
            )
        bad = {
            c: n
            for c, n in codes.items()
            if not (isinstance(c, int) and (200 <= c < 300 or c in (413, 503)))
        }
        total = sum(codes.values())
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [0.0] * 99
        store = "SQLite" if o.sqlite else "PostgreSQL"
        print(f"{o.workers} uvicorn workers on {store}, {o.clients} connections "
              f"({o.procs} processes), {o.tenants} tenants, {o.body} B, {took:.1f} s")  # fmt: skip
        print(f"requests {total:,}: {total / took:,.0f}/s; latency p50 {q[49] * 1000:.1f} ms, "
              f"p99 {q[98] * 1000:.1f} ms; statuses {dict(codes)}")  # fmt: skip
        print(f"accepted {len(accepted):,}; in the store under the right tenant: "
              f"{len(accepted) - missing - mixed - unsealed:,}; missing {missing}, "
              f"cross-tenant {mixed}, unsealed 2xx {unsealed}; others {bad or 'none'}")  # fmt: skip
        print(f"indexed everything {drained:.1f} s after the load stopped")
        mib = [f"{t:.0f}s {m / 2**20:.0f}" for t, m in rss]
        print(f"workers' resident memory (MiB, {len(workers)} processes): " + ", ".join(mib))
        for pid, samples in sorted(per_process.items()):
            trace = " ".join(f"{m / 2**20:.0f}" for m in samples)
            print(f"  pid {pid} ({roles.get(pid, '?')}), MiB every 5 s: {trace}")
        print(f"audit log: {'ok' if audit.ok else 'FAILED ' + str(audit.problem)}, "
              f"{audit.entries:,} entries")  # fmt: skip
        ok = not (missing or mixed or unsealed or bad) and audit.ok and len(accepted) > 0
        print("PASS" if ok else "FAIL")
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
