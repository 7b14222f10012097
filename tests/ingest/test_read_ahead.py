"""Bodies read ahead (declared up to 1 MiB) reach the app byte for byte, whatever the
shape of the server's ``http.request`` messages.

ASGI servers split a body differently: uvicorn usually sends it in one message, while
hypercorn and httpx's ASGI transport send the data and then an empty message with
``more_body: False``. The middleware reads the whole body, spools it, then hands it to
the app; the app must see exactly what the client sent, and the seal must be of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.ingest.request_state import LINGER_BYTES, LINGER_SECONDS

BODY = b'{"text": "Acme plans a second warehouse in Braga and forty new hires in May."}'
SHAPES = {
    "one message": [(BODY, False)],
    "data, then an empty last message": [(BODY, True), (b"", False)],
    "two halves": [(BODY[:30], True), (BODY[30:], False)],
    "three pieces, then an empty last message": [
        (BODY[:10], True),
        (BODY[10:40], True),
        (BODY[40:], True),
        (b"", False),
    ],
}


def _app(guard: Guard) -> GuardMiddleware:
    async def documents(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)})

    app = Starlette(routes=[Route("/documents", documents, methods=["POST"])])
    return GuardMiddleware(app, guard=guard, indexer="none")


@pytest.mark.parametrize("shape", SHAPES)
def test_when_a_small_body_arrives_in_any_message_shape_then_the_app_reads_all_of_it(
    guard: Guard, shape: str
) -> None:
    key = new_api_key(guard.store, "acme")
    app = _app(guard)
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": body, "more_body": more} for body, more in SHAPES[shape]
    ]
    sent: list[MutableMapping[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/documents",
        "raw_path": b"/documents",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"service"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # nothing more from this client
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    start, *bodies = sent
    assert start["status"] == 200
    answer = httpx.Response(200, content=b"".join(m.get("body", b"") for m in bodies)).json()
    assert answer == {"sha256": hashlib.sha256(BODY).hexdigest(), "bytes": len(BODY)}
    seal = dict(start["headers"])[b"kairo-provenance"].decode()
    assert guard.open_seal(seal).digest == hashlib.sha256(BODY).hexdigest()


def test_when_httpx_posts_through_the_asgi_transport_then_the_app_reads_the_whole_body(
    guard: Guard,
) -> None:
    key = new_api_key(guard.store, "acme")
    app = _app(guard)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            auth = {"authorization": f"Bearer {key}"}
            return await client.post("/documents", content=BODY, headers=auth)

    response = asyncio.run(run())
    assert response.json() == {"sha256": hashlib.sha256(BODY).hexdigest(), "bytes": len(BODY)}


@pytest.mark.parametrize("pace", ["fast", "slow"])
def test_when_a_body_past_the_cap_never_ends_then_the_413_comes_within_the_linger_bounds(
    guard: Guard, pace: str
) -> None:
    # after the cap the middleware reads on only so far (LINGER_BYTES) and so long
    # (LINGER_SECONDS) before it answers: an endless body cannot hold the 413 back
    key = new_api_key(guard.store, "acme")
    app = GuardMiddleware(_app(guard).app, guard=guard, indexer="none", max_body_bytes=4096)
    chunk = b"x" * 16384
    read = 0

    async def receive() -> dict[str, Any]:  # past the cap at once, then on and on
        nonlocal read
        body = chunk
        if pace == "slow" and read:  # a trickle: 16 bytes every 50 ms
            await asyncio.sleep(0.05)
            body = chunk[:16]
        read += len(body)
        return {"type": "http.request", "body": body, "more_body": True}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/documents",
        "raw_path": b"/documents",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {key}".encode())],  # no length: streamed
        "client": ("127.0.0.1", 50000),
    }
    started = time.monotonic()
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    took = time.monotonic() - started
    assert sent[0]["status"] == 413
    assert read <= 4096 + LINGER_BYTES + len(chunk)
    assert took < LINGER_SECONDS + 2
    if pace == "slow":  # it did wait for the client, up to the bound
        assert took >= LINGER_SECONDS
