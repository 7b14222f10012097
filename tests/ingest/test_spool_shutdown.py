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
from kg_testing import make_guard
from loopback import running_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.store.spool import backlog

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
