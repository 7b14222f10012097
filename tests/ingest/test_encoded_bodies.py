"""A body sent with a Content-Encoding is refused (415), never spooled as compressed bytes.

The indexer fingerprints a body's text; a gzip body's bytes are not its text, so a
tenant's document uploaded compressed was accepted and sealed, and a decoded copy of it
then passed the fingerprint net as operator data.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import httpx
import orjson
import pytest
from corpus import prose
from kg_testing import running_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.store.spool import backlog

DOCUMENT = prose("encoded-upload", paragraphs=2)


@pytest.fixture
def served(guard: Guard) -> Iterator[tuple[str, str, list[bytes]]]:
    seen: list[bytes] = []

    async def upload(request: Request) -> JSONResponse:
        seen.append(await request.body())
        return JSONResponse({"ok": True}, status_code=201)

    app = GuardMiddleware(Starlette(routes=[Route("/docs", upload, methods=["POST"])]), guard=guard)
    with running_server(app) as url:
        yield url, new_api_key(guard.store, "acme"), seen


@pytest.mark.parametrize("coding", ["gzip", "GZIP", "br", "identity, gzip"])
def test_an_encoded_body_is_refused_and_never_spooled(
    guard: Guard, served: tuple[str, str, list[bytes]], coding: str
) -> None:
    url, key, seen = served
    body = gzip.compress(orjson.dumps({"text": DOCUMENT}))
    headers = {"authorization": f"Bearer {key}", "content-encoding": coding}
    response = httpx.post(f"{url}/docs", content=body, headers=headers)
    assert response.status_code == 415
    assert response.json()["rule"] == "body.encoded"
    assert seen == []  # the app never saw it
    assert backlog(guard.spool_directory).pending_bytes == 0
    guard.indexer.drain()
    assert guard.store.list_provenance("acme") == []


@pytest.mark.parametrize("coding", [None, "identity", "Identity"])
def test_a_body_sent_as_is_is_served(
    guard: Guard, served: tuple[str, str, list[bytes]], coding: str | None
) -> None:
    url, key, seen = served
    body = orjson.dumps({"text": DOCUMENT})
    headers = {"authorization": f"Bearer {key}"}
    if coding is not None:
        headers["content-encoding"] = coding
    response = httpx.post(f"{url}/docs", content=body, headers=headers)
    assert response.status_code == 201
    assert response.headers["kairo-provenance"]
    assert seen == [body]
    guard.indexer.drain()
    copy = {"text": f"Reprinted: {DOCUMENT[40:400]}"}
    found = guard.fingerprints.overlap(copy)
    assert found is not None
    assert found.tenant == "acme"
