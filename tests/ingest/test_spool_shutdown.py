"""At lifespan shutdown the middleware closes its spool before the server hears: bodies
still queued are made durable, the indexer process indexes what was accepted and
exits, and only then does the server learn that shutdown is complete (a server that
stops right after, as uvicorn does, leaves nothing to an orphaned indexer).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from kg_testing import make_guard
from loopback import running_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.store.spool import backlog
from kairo_guard.store.sqlite import DB_FILE_NAME

BODY = b'{"text": "Braga warehouse lease renewal, signed copy attached for the file."}'


def test_at_shutdown_the_indexer_indexes_what_was_accepted_and_exits(tmp_path: Path) -> None:
    shut: list[bool] = []

    async def documents(request: Request) -> JSONResponse:
        return JSONResponse({"bytes": len(await request.body())})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        shut.append(True)

    inner = Starlette(routes=[Route("/documents", documents, methods=["POST"])], lifespan=lifespan)
    with make_guard(tmp_path / "state", pii_gate=False) as guard:
        key = new_api_key(guard.store, "acme")
        app = GuardMiddleware(inner, guard=guard, indexer="process")
        with running_server(app) as url:  # a real uvicorn, its lifespan on
            answer = httpx.post(
                f"{url}/documents", content=BODY, headers={"Authorization": f"Bearer {key}"}
            )
            assert answer.status_code == 200
            child = app.spool._child
            assert child is not None  # the indexer process is running
        # the server thread has ended: it heard that shutdown was complete
        assert shut == [True]
        assert app.spool._child is None
        assert child.poll() is not None  # it exited: it had indexed the spool
        assert backlog(guard.spool_directory).pending_bytes == 0
        digest = hashlib.sha256(BODY).hexdigest()
        assert [row.digest for row in guard.store.list_provenance("acme")] == [digest]


def test_the_indexer_and_writer_processes_use_the_guards_store_however_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the guard's store and replica name come from Guard(env=...), not the process
    # environment, which names another store: the helper processes must follow the guard
    shared = tmp_path / "shared" / DB_FILE_NAME
    shared.parent.mkdir()
    decoy = tmp_path / "decoy" / DB_FILE_NAME
    decoy.parent.mkdir()
    monkeypatch.setenv("KAIRO_GUARD_DB_URL", f"sqlite:///{decoy}")
    monkeypatch.setenv("KAIRO_GUARD_SPOOL_WRITER", "process")  # it opens a guard too
    env = {"KAIRO_GUARD_DB_URL": f"sqlite:///{shared}", "KAIRO_GUARD_AUDIT_LOG_ID": "replica-7"}

    async def documents(request: Request) -> JSONResponse:
        return JSONResponse({"bytes": len(await request.body())})

    inner = Starlette(routes=[Route("/documents", documents, methods=["POST"])])
    with make_guard(tmp_path / "state", pii_gate=False, env=env) as guard:
        key = new_api_key(guard.store, "acme")
        app = GuardMiddleware(inner, guard=guard, indexer="process")
        with running_server(app) as url:
            answer = httpx.post(
                f"{url}/documents", content=BODY, headers={"Authorization": f"Bearer {key}"}
            )
            assert answer.status_code == 200
        digest = hashlib.sha256(BODY).hexdigest()
        assert [row.digest for row in guard.store.list_provenance("acme")] == [digest]
        assert "replica-7" in guard.store.coverage()  # the indexer published as this replica
    assert not decoy.exists()  # no helper process opened the environment's store
    assert not (tmp_path / "state" / DB_FILE_NAME).exists()


def test_a_child_environment_names_the_settings_store_or_none() -> None:
    from kairo_guard.config.settings import child_environment, load_settings

    base = {"KAIRO_GUARD_DB_URL": "postgresql://elsewhere/db", "PATH": "/bin"}
    settings = load_settings(home="/tmp/kg-x", env={})  # the embedded default: no URL
    env = child_environment(settings, base)
    assert "KAIRO_GUARD_DB_URL" not in env
    assert env["KAIRO_GUARD_AUDIT_LOG_ID"] == settings.audit_log_id
    assert env["PATH"] == "/bin"
