"""The demo's first act: documents arrive over HTTP at the example ingestion service."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
import orjson

from kairo_guard.guard import Guard
from kairo_guard.ingest.apikeys import new_api_key

DOCUMENTS = {
    "acme": [
        ("contract-17", "Acme supply agreement: 40,000 units of widget W-7 at $3.10. Net 60."),
        ("memo-3", "Acme Q3 plan: expand the Lisbon plant. Hire 12 engineers."),
    ],
    "globex": [
        ("ticket-88", "Globex support ticket: reactor 2 coolant pump is noisy. Please advise."),
        ("report-5", "Globex finance: three invoices are overdue. Escalate to legal."),
    ],
}


def _request(
    url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    method = "POST" if data else "GET"
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback http only
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def _start(service: Path, home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = home / "service.port"
    env = {**os.environ, "KAIRO_GUARD_HOME": str(home)}
    env.pop("KAIRO_GUARD_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, str(service), "--data", str(home / "data"), "--port", "0",
         "--port-file", str(port_file)],
        env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if port_file.exists():
            url = f"http://127.0.0.1:{port_file.read_text().strip()}"
            try:
                if _request(f"{url}/healthz")[0] == 200:
                    return proc, url
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the ingestion service did not start")


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def ingest_over_http(
    guard: Guard, home: Path, service: Path, checks: list[tuple[str, bool]]
) -> dict[str, list[dict[str, Any]]]:
    """Run the service, upload both tenants' documents, return what it stored."""
    say = click.echo
    keys = {tenant: new_api_key(guard.store, tenant) for tenant in DOCUMENTS}
    say("1. The ingestion service starts (uvicorn + GuardMiddleware, its own process);")
    say("   acme and globex upload documents with their API keys.")
    proc, url = _start(service, home)
    try:
        for tenant, docs in DOCUMENTS.items():
            auth = {"authorization": f"Bearer {keys[tenant]}", "content-type": "application/json"}
            for title, text in docs:
                body = orjson.dumps({"title": title, "text": text})
                status, headers, answer = _request(f"{url}/documents", data=body, headers=auth)
                seal = headers.get("kairo-provenance", "")
                say(f"    {tenant} POST /documents {title}: {status}, seal {seal[:36]}...")
                doc_id = orjson.loads(answer)["id"]
                ask = orjson.dumps({"document_id": doc_id, "instruction": "summarize"})
                status, _, _ = _request(f"{url}/agent/run", data=ask, headers=auth)
                say(f"    {tenant} POST /agent/run on {title}: {status} (output sealed, {tenant})")
                checks.append((f"{tenant} upload sealed", bool(seal) and status == 201))
        spoof, _, _ = _request(
            f"{url}/documents", data=b'{"title":"x","text":"y"}', headers={"x-tenant-id": "acme"}
        )
        say(f"    a request with only 'X-Tenant-Id: acme' and no key: {spoof}")
        checks.append(("spoofed tenant header refused", spoof == 401))
        auth = {"authorization": f"Bearer {keys['acme']}"}
        train, _, _ = _request(f"{url}/train/examples", data=b'{"x":1}', headers=auth)
        say(f"    acme POST /train/examples (a shared training route): {train}")
        checks.append(("shared sink route refused", train == 403))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        tenant: _read(home / "data" / tenant / "documents.jsonl")
        + _read(home / "data" / tenant / "agent_outputs.jsonl")
        for tenant in DOCUMENTS
    }
