"""Replicas sharing one store, each with its own state directory and spool: a check or
vetting on one waits for what the others accepted (their index coverage, published
through the store), and refuses when it cannot."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from kg_testing import make_guard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import ContentRefused, Guard, GuardMiddleware, KeyRing
from kairo_guard.core.exceptions import IndexLagging
from kairo_guard.detect.index_service import serve
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.store.sqlite import DB_FILE_NAME

DOC = ("Acme's plan for the spring: a second warehouse near the river, twelve new "
       "engineers for the logistics platform, and a supplier contract kept confidential "
       "until the board signs it in May.")  # fmt: skip


async def _ingest(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())}, status_code=201)


def _replica(root: Path, name: str, ring: KeyRing, db: Path, **kwargs: object) -> Guard:
    home = root / name
    home.mkdir()
    (home / "kairo-guard.toml").write_text("[limits]\nindex_wait_seconds = 1\n")
    env = {"KAIRO_GUARD_DB_URL": f"sqlite:///{db}", "KAIRO_GUARD_AUDIT_LOG_ID": name}
    return make_guard(home, ring=ring, pii_gate=False, env=env, **kwargs)


async def _upload(app: GuardMiddleware, key: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
        auth = {"Authorization": f"Bearer {key}"}
        return await client.post("/documents", json={"text": DOC}, headers=auth)


def test_vetting_on_one_replica_waits_for_what_another_accepted(tmp_path: Path) -> None:
    import asyncio

    ring, db = KeyRing.generate(), tmp_path / DB_FILE_NAME
    a = _replica(tmp_path, "replica-a", ring, db)
    b = _replica(tmp_path, "replica-b", ring, db)
    try:
        app = GuardMiddleware(
            Starlette(routes=[Route("/documents", _ingest, methods=["POST"])]),
            guard=a,
            indexer="none",  # nothing indexes A's spool yet
        )
        key = new_api_key(a.store, "acme")
        assert asyncio.run(_upload(app, key)).status_code == 201  # durable in A's spool

        # B must not vouch for text A accepted and has not indexed: it cannot know
        with pytest.raises(IndexLagging, match="replica-a"):
            b.seal_operator_data({"text": DOC}, source="news")

        stop = threading.Event()  # A's indexer runs: it indexes and publishes coverage
        worker = threading.Thread(target=serve, args=(a.indexer, stop.is_set), daemon=True)
        worker.start()
        try:
            with pytest.raises(ContentRefused) as refused:
                b.seal_operator_data({"text": DOC}, source="news")
            assert refused.value.rule == "fingerprint.tenant-content"  # the net saw it
            # other text passes once A has covered everything: B is not blocked for good
            b.seal_operator_data({"text": "Water boils at 100 degrees."}, source="wiki")
        finally:
            stop.set()
            worker.join(timeout=10)
        assert b.store.retire_replica("replica-a")  # a replica gone for good
        assert "replica-a" not in b.store.coverage()
    finally:
        b.close()
        a.close()
