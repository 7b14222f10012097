"""A PostgreSQL outage in the middle of ingestion, on a cluster of the test's own
(``initdb`` and ``pg_ctl`` in a temporary directory, run as the ``postgres`` user):
during it, ingestion answers 201 only for bodies it made durable (the spool is local)
or 503, never an error that blames the tenant; a shared sink blocks within its bound;
after it, service resumes and every body ever answered 201 is in the store under its
tenant by digest: nothing accepted goes unrecorded."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from kg_testing import make_guard, running_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import SEAL_FIELD, GuardMiddleware, KeyRing, StoreError
from kairo_guard.ingest.apikeys import new_api_key

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class Cluster:
    """A PostgreSQL cluster in a temporary directory."""

    data: Path
    port: int

    @property
    def url(self) -> str:
        return (f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
                "?connect_timeout=2&statement_timeout=2000&pool_timeout=1")  # fmt: skip

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1"
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data),
             "-o", options, "-l", str(self.data.parent / "log"), "-w", *args],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # not under pytest's tmp_path: its parents are root's alone, and the server runs as
    # the postgres user (initdb refuses root)
    root = Path(tempfile.mkdtemp(prefix="kg-pg-"))
    shutil.chown(root, "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    found = Cluster(root / "data", port)
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(found.data),
         "-A", "trust", "-U", "postgres"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    found.ctl("start")
    try:
        yield found
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(found.data),
             "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


async def _ingest(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())}, status_code=201)


def _post(client: httpx.Client, base: str, key: str, n: int) -> httpx.Response:
    body = {"text": f"outage test document {n}: the warehouse moves to the coast in spring"}
    return client.post(f"{base}/documents", json=body, headers={"Authorization": f"Bearer {key}"})


def test_a_database_outage_mid_run_answers_503_blocks_sinks_and_loses_nothing(
    tmp_path: Path, cluster: Cluster
) -> None:
    env = {"KAIRO_GUARD_DB_URL": cluster.url}
    ring = KeyRing.generate()
    (tmp_path / "state").mkdir()  # a check waits at most 3 s for the index (default 30)
    (tmp_path / "state" / "kairo-guard.toml").write_text("[limits]\nindex_wait_seconds = 3\n")
    guard = make_guard(tmp_path / "state", ring=ring, pii_gate=False, env=env)
    key = new_api_key(guard.store, "acme")
    app = GuardMiddleware(
        Starlette(routes=[Route("/documents", _ingest, methods=["POST"])]),
        guard=guard,
        indexer="thread",
    )
    accepted: list[str] = []  # the seals of every body answered 201
    statuses: list[int] = []
    sink = guard.resolve_sink("corpus", kind="shared-training")
    note = {"text": "Release notes: the router now retries twice before it gives up."}
    vetted = {**note, SEAL_FIELD: guard.seal_operator_data(note, source="release-notes")}
    assert guard.check([vetted], sink=sink).allowed == 1  # passes while the database is up
    try:
        with running_server(app) as base, httpx.Client(timeout=30) as client:
            for n in range(20):  # before: the database is up
                answer = _post(client, base, key, n)
                assert answer.status_code == 201
                accepted.append(answer.headers["kairo-provenance"])

            cluster.ctl("-m", "immediate", "stop")  # the database goes away mid-run
            time.sleep(1.5)  # past the API key cache's trusted second
            for n in range(20, 26):
                answer = _post(client, base, key, n)
                statuses.append(answer.status_code)
                assert answer.status_code in (201, 503), answer.text  # never 401 or 500
                if answer.status_code == 201:
                    accepted.append(answer.headers["kairo-provenance"])
            assert 503 in statuses  # what needs the database is refused, not guessed
            started = time.monotonic()
            # a sink blocks while the guard cannot decide: it raises, or refuses everything
            with contextlib.suppress(StoreError):
                assert guard.check([vetted], sink=sink).allowed == 0
            assert time.monotonic() - started < 20  # within the bounded waits and timeouts

            cluster.ctl("start")  # the database comes back
            deadline = time.monotonic() + 30
            n = 40
            while True:  # the pool replaces its broken connections
                answer = _post(client, base, key, n)
                if answer.status_code == 201 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert answer.status_code == 201
            accepted.append(answer.headers["kairo-provenance"])
            for n in range(41, 50):
                answer = _post(client, base, key, n)
                assert answer.status_code == 201
                accepted.append(answer.headers["kairo-provenance"])

        guard.wait_indexed(timeout=60)
        stored = {row.digest for row in guard.store.list_provenance("acme")}
        digests = [guard.open_seal(seal).digest for seal in accepted]
        assert [d for d in digests if d not in stored] == []  # nothing accepted was lost
        assert len(set(digests)) >= 30
        assert len(set(digests)) == len(accepted)
        guard.audit.flush()  # the audit log kept going; its anchor caught up after
        head = orjson.loads((tmp_path / "state" / "audit" / "audit.head").read_bytes())
        anchored = guard.store.get_audit_anchor(guard.settings.audit_log_id)
        assert anchored is not None
        assert (anchored.count, anchored.hash) == (head["count"], head["hash"])
    finally:
        guard.close()


def test_the_cluster_fixture_really_runs_a_server(cluster: Cluster) -> None:
    import psycopg

    with psycopg.connect(cluster.url.split("?")[0], connect_timeout=5) as conn:
        assert conn.execute("SHOW port").fetchone() == (str(cluster.port),)
    assert os.path.isdir(cluster.data)
