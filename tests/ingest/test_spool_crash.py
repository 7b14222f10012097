"""A guarded server SIGKILLed under load: every body it acknowledged is still caught.

A real uvicorn process (one worker, no indexer of its own) serves a guarded endpoint
while client threads post distinct prose; the server and its helper processes are
SIGKILLed mid-load, a second server takes a few more bodies, and then a guard opened
on the same state directory must block a copy of every body that was answered 2xx,
hold a provenance row for each, and leave nothing acknowledged unindexed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from kg_testing import make_guard, state_store_env
from procs import child_pids

from kairo_guard import KeyRing
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.store.spool import Backlog, backlog, encode_body, segments

APP = "spool_crash_app:app"
CLIENTS = 6
KILL_AFTER = 150
"""Bodies acknowledged before the kill (or after about 4 s of load)."""
VOCABULARY = (
    "harbour ledger invoice turbine orchard copper lantern meadow quarry ribbon saddle "
    "tunnel velvet walnut anchor beacon cinder dahlia ember falcon garnet hollow iris "
    "juniper kestrel lagoon marble nectar onyx pepper quartz raven sorrel thistle"
)


@dataclass(frozen=True)
class Accepted:
    text: str
    sha256: str
    seal: str


def _prose(seed: int) -> str:
    rnd = random.Random(seed)
    sentences = [
        " ".join(rnd.choices(VOCABULARY.split(), k=12)).capitalize() + "." for _ in range(5)
    ]
    return f"Memo {seed}: " + " ".join(sentences)  # about 450 characters, its own words


def _children(pid: int) -> list[int]:
    return child_pids(pid)


@contextlib.contextmanager
def _server(home: Path, ring: KeyRing, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, KAIRO_GUARD_HOME=str(home), KAIRO_GUARD_INDEXER="none")
    env.update(state_store_env(home))  # the PostgreSQL pass: the guard's own schema
    env["KAIRO_GUARD_KEY"] = ring.to_env_value()
    cmd = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--log-level", "warning", "--no-access-log"]
    with log.open("ab") as err:  # a file: a full stderr pipe cannot stall the server
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not start: {log.read_text()[-800:]}")
                time.sleep(0.05)
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        _kill(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server, its process group and its children (which run in process
    groups of their own), as a crash of the whole service would."""
    helpers = _children(proc.pid) if proc.poll() is None else []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in helpers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.02)  # their locks on the spool go with them


def _post_until_refused(
    url: str, key: str, worker: int, accepted: list[Accepted], stop: threading.Event
) -> None:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    with httpx.Client(timeout=5) as client:
        for n in range(100_000):
            if stop.is_set():
                return
            text = _prose(worker * 100_000 + n)
            body = orjson.dumps({"text": text})
            try:
                response = client.post(f"{url}/documents", content=body, headers=headers)
            except httpx.HTTPError:
                return  # the server is gone
            if response.is_success:
                digest = hashlib.sha256(body).hexdigest()
                assert response.json()["sha256"] == digest
                accepted.append(Accepted(text, digest, response.headers["kairo-provenance"]))


def _load_and_kill(url: str, key: str, proc: subprocess.Popen[bytes]) -> list[Accepted]:
    accepted: list[Accepted] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=_post_until_refused, args=(url, key, w, accepted, stop))
        for w in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    deadline = time.monotonic() + 4
    while len(accepted) < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.01)
    _kill(proc)  # mid-load: the clients are still posting
    stop.set()
    for client in clients:
        client.join(10)
    return accepted


def _audit(home: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in (home / "audit" / "audit.jsonl").read_bytes().splitlines()]


def test_when_the_server_is_killed_under_load_then_every_acknowledged_body_is_still_caught(
    tmp_path: Path, ring: KeyRing
) -> None:
    home, log = tmp_path / "state", tmp_path / "uvicorn.log"
    with make_guard(home, ring=ring) as setup:
        key = new_api_key(setup.store, "acme")

    with _server(home, ring, log) as (proc, url):
        accepted = _load_and_kill(url, key, proc)
    assert len(accepted) >= 20, f"too few bodies before the kill: {log.read_text()[-800:]}"
    # A write the kill cut short, as a torn tail of the dead server's last segment
    torn = encode_body("acme", "", orjson.dumps({"text": _prose(-1)}))[:40]
    killed_segment = segments(home / "spool")[-1]
    with killed_segment.open("ab") as f:
        f.write(torn)

    with _server(home, ring, log) as (proc, url):  # restarted: a few more bodies
        after: list[Accepted] = []
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        for n in range(5):
            text = _prose(10_000_000 + n)
            body = orjson.dumps({"text": text})
            response = httpx.post(f"{url}/documents", content=body, headers=headers, timeout=5)
            assert response.status_code == 201
            seal = response.headers["kairo-provenance"]
            after.append(Accepted(text, hashlib.sha256(body).hexdigest(), seal))
    accepted += after

    with make_guard(home, ring=ring, pii_gate=False) as guard:
        # (a) nothing indexed the spool yet: the store may lack any of these digests
        before = {row.digest for row in guard.store.list_provenance("acme")}
        missing_before = {a.sha256 for a in accepted} - before

        # (b) the check waits for the index (indexing the spool itself)
        copies = [{"text": a.text} for a in accepted]
        report = guard.check(copies, sink=guard.resolve_sink("s", kind="shared-training"))
        assert report.blocked == len(accepted)
        assert report.by_rule == {"fingerprint.tenant-content": len(accepted)}
        assert {v.tenant for v in report.violations} == {guard.keys.pseudonym("acme")}

        # (c) every acknowledged body has its provenance row, and its seal its digest
        rows = {row.digest for row in guard.store.list_provenance("acme")}
        assert {a.sha256 for a in accepted} <= rows
        assert all(guard.open_seal(a.seal).digest == a.sha256 for a in accepted)

        # (d) nothing acknowledged is left unindexed; the torn tail was skipped, audited
        guard.wait_indexed(5)
        assert backlog(guard.spool_directory) == Backlog(0, 0)
    tails = [e for e in _audit(home) if e.get("event") == "spool.torn_tail"]
    assert killed_segment.name in {e["segment"] for e in tails}
    assert all(int(str(e["bytes"])) > 0 for e in tails)
    print(f"{len(accepted)} acknowledged, {len(missing_before)} unindexed before the check")
