"""The middleware's fast path admits only the common request, and decides it as the
general path would: the body is spooled and sealed before the app runs, the response
carries the seal, the request is counted; anything unusual goes the general way.

Requests are made with a key the verifier has seen (a first request warms its cache),
since only such a key is admitted; ASGI calls are made directly, so each message the
app and the client exchange is under the test's control.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard, current_tenant
from kairo_guard.core.exceptions import StoreError
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.store.spool import read_segment, segments

BODY = b'{"text": "Acme plans a second warehouse in Braga and forty new hires in May."}'
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
Headers = list[tuple[bytes, bytes]]


def _app(guard: Guard) -> GuardMiddleware:
    async def documents(request: Request) -> JSONResponse:
        body = await request.body()
        digest = hashlib.sha256(body).hexdigest()
        return JSONResponse({"sha256": digest, "tenant": current_tenant()})

    async def train(request: Request) -> JSONResponse:
        return JSONResponse({"trained": True}, status_code=202)

    app = Starlette(
        routes=[
            Route("/documents", documents, methods=["POST"]),
            Route("/train", train, methods=["POST"]),
            Route("/healthz", documents, methods=["POST"]),
        ]
    )
    sink = guard.resolve_sink("router-train", kind="shared-training")
    return GuardMiddleware(
        app, guard=guard, indexer="none", sink_routes={"/train": sink}, public_paths=["/healthz"]
    )


def _scope(path: str, headers: Headers) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


def _headers(key: str, *extra: tuple[bytes, bytes], size: int = len(BODY)) -> Headers:
    return [
        (b"host", b"service"),
        (b"authorization", f"Bearer {key}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(size).encode()),
        *extra,
    ]


def _call(
    app: GuardMiddleware, scope: dict[str, Any], parts: list[tuple[bytes, bool]]
) -> list[MutableMapping[str, Any]]:
    messages = [{"type": "http.request", "body": b, "more_body": more} for b, more in parts]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    return sent


@pytest.fixture(params=["door", "python"])
def warm(guard: Guard, request: pytest.FixtureRequest) -> tuple[GuardMiddleware, str]:
    """The app and a key its verifier has verified (the fast path admits only those);
    the admitted request served by the native door, or by its Python steps."""
    key = new_api_key(guard.store, "acme")
    app = _app(guard)
    if request.param == "python":
        app._door = None
    else:
        assert app._door is not None  # built where the native writer is (CI builds both)
    first = _call(app, _scope("/documents", _headers(key)), [(BODY, False)])
    assert first[0]["status"] == 200
    return app, key


def _spooled_digests(guard: Guard) -> list[str]:
    return [
        hashlib.sha256(record.body).hexdigest()
        for segment in segments(guard.spool_directory)
        for record in read_segment(segment, 0, 1 << 30)[0]
    ]


def test_when_a_plain_request_is_admitted_then_its_body_is_spooled_and_sealed(
    guard: Guard, warm: tuple[GuardMiddleware, str]
) -> None:
    app, key = warm
    scope = _scope("/documents", _headers(key))
    assert app._fast is not None
    assert app._fast.admit(scope) == ("acme", len(BODY))
    other = b'{"text": "Forty new hires in Braga, a second warehouse by May."}'
    sent = _call(app, _scope("/documents", _headers(key, size=len(other))), [(other, False)])
    digest = hashlib.sha256(other).hexdigest()
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"sha256":"%s","tenant":"acme"}' % digest.encode()
    seal = dict(sent[0]["headers"])[b"kairo-provenance"].decode()
    label = guard.open_seal(seal)
    assert (label.digest, label.tenant) == (digest, "acme")
    assert _spooled_digests(guard).count(digest) == 1


@pytest.mark.parametrize(
    "change",
    [
        "traceparent",
        "baggage",
        "x-api-key",
        "second authorization",
        "no content-length",
        "empty body",
        "sink route",
        "public path",
        "unsure path",
        "unknown key",
    ],
)
def test_when_a_request_is_not_plain_then_the_fast_path_does_not_admit_it(
    warm: tuple[GuardMiddleware, str], change: str
) -> None:
    app, key = warm
    path, headers = "/documents", _headers(key)
    if change in ("traceparent", "baggage", "x-api-key"):
        headers.append(
            (change.encode(), b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        )
    elif change == "second authorization":
        headers.append((b"authorization", f"Bearer {key}".encode()))
    elif change == "no content-length":
        headers = [h for h in headers if h[0] != b"content-length"]
    elif change == "empty body":
        headers = _headers(key, size=0)
    elif change == "unknown key":
        headers = _headers(key[:-4] + "AAAA")
    else:
        path = {"sink route": "/train", "public path": "/healthz", "unsure path": "/train/"}[change]
    assert app._fast is not None
    assert app._fast.admit(_scope(path, headers)) is None


def test_when_a_known_key_posts_to_a_sink_route_then_it_is_refused_as_before(
    warm: tuple[GuardMiddleware, str],
) -> None:
    app, key = warm
    sent = _call(app, _scope("/train", _headers(key)), [(BODY, False)])
    assert sent[0]["status"] == 403


@pytest.mark.parametrize(
    "parts",
    [
        [(BODY[:30], True), (BODY[30:], False)],
        [(BODY, True), (b"", False)],
    ],
    ids=["two halves", "data then an empty last message"],
)
def test_when_an_admitted_body_arrives_in_several_messages_then_the_general_path_reads_it_all(
    guard: Guard, warm: tuple[GuardMiddleware, str], parts: list[tuple[bytes, bool]]
) -> None:
    app, key = warm
    sent = _call(app, _scope("/documents", _headers(key)), parts)
    digest = hashlib.sha256(BODY).hexdigest()
    assert sent[0]["status"] == 200
    assert digest.encode() in sent[1]["body"]
    assert guard.open_seal(dict(sent[0]["headers"])[b"kairo-provenance"].decode()).digest == digest


def test_when_the_body_is_shorter_than_declared_then_the_general_path_seals_what_came(
    guard: Guard, warm: tuple[GuardMiddleware, str]
) -> None:
    app, key = warm
    sent = _call(app, _scope("/documents", _headers(key, size=len(BODY) + 10)), [(BODY, False)])
    # the general path reads what came: the client ended the body early
    assert sent[0]["status"] == 200
    digest = hashlib.sha256(BODY).hexdigest()
    assert guard.open_seal(dict(sent[0]["headers"])[b"kairo-provenance"].decode()).digest == digest


def test_when_the_spool_cannot_take_an_admitted_body_then_the_answer_is_503_and_the_app_not_run(
    guard: Guard, warm: tuple[GuardMiddleware, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, key = warm
    ran: list[bool] = []
    tries: list[bytes] = []
    inner = app.app

    async def watched(scope: Any, receive: Any, send: Any) -> None:
        ran.append(True)
        await inner(scope, receive, send)

    async def broken(tenant: str, chunks: list[bytes], *args: Any) -> tuple[str, str]:
        tries.append(b"".join(chunks))
        raise StoreError("disk full")

    class BrokenWriter:  # the native writer refusing (a disk gone): the door's side
        queued_bytes = 0

        def submit(self, future: Any, tenant: bytes, meta: bytes, body: bytes, *_: Any) -> None:
            tries.append(body)
            raise StoreError("disk full")

    broken_writer = BrokenWriter()
    monkeypatch.setattr(app, "app", watched)
    monkeypatch.setattr(app.spool, "record", broken)  # (either way of spooling a body)
    monkeypatch.setattr(app.spool, "submit", broken)
    monkeypatch.setattr(app.spool, "native_writer", lambda loop: broken_writer)
    if app._door is not None:  # (the door holds the spool's method it was built with)
        app._door = app.make_door()
    sent = _call(app, _scope("/documents", _headers(key)), [(BODY, False)])
    assert sent[0]["status"] == 503
    assert dict(sent[0]["headers"])[b"retry-after"] == b"1"
    assert ran == []
    assert tries == [BODY]  # answered, not silently tried again
    guard.audit.flush()
    entries = [orjson.loads(line) for line in guard.audit.path.read_bytes().splitlines()]
    assert entries[-1]["event"] == "request"
    assert entries[-1]["status"] == 503


@pytest.mark.parametrize(
    "value",
    [b"Bearer caf\xe9", b"Bearer \xff\xfe", b"Bearer kgk.\x00", b"Bearer ", b"bearer x"],
    ids=["latin-1", "not utf-8", "nul", "empty", "lower case"],
)
def test_when_the_bearer_token_is_not_a_key_then_the_answer_is_401_not_a_crash(
    warm: tuple[GuardMiddleware, str], value: bytes
) -> None:
    app, _ = warm
    headers = [(b"authorization", value), (b"content-length", str(len(BODY)).encode())]
    assert app._fast is not None
    assert app._fast.admit(_scope("/documents", headers)) is None
    assert app._fast.admit_python(_scope("/documents", headers)) is None
    sent = _call(app, _scope("/documents", headers), [(BODY, False)])
    assert sent[0]["status"] == 401


def test_the_native_gate_is_built_on_a_machine_with_gcc_and_openssl(
    warm: tuple[GuardMiddleware, str],
) -> None:
    # CI builds it (hatch_build.py); without it the fast path runs its Python checks,
    # which test_fast_path_native.py would then not compare it with
    app, _ = warm
    assert importlib.util.find_spec("kairo_guard.ingest._gate") is not None
    assert app._fast is not None
    assert app._fast.admit != app._fast.admit_python
