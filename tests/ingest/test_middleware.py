"""GuardMiddleware on a real uvicorn on loopback, with a real Starlette app."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kg_testing import make_guard, running_server
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect as ws_connect

from kairo_guard import Guard, current_tenant
from kairo_guard.assembly import open_store
from kairo_guard.ingest.apikeys import REVALIDATE_SECONDS, ApiKeyVerifier, new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.ingest.resolvers import ApiKeyResolver, CompositeResolver, TrustedProxyResolver

CAP = 64 * 1024


def _app(guard: Guard, **options: Any) -> Any:
    started: list[bool] = []

    async def documents(request: Request) -> JSONResponse:
        before = current_tenant()
        body = await request.body()
        await asyncio.sleep(0.001)  # let other requests interleave
        in_thread = await run_in_threadpool(current_tenant)
        prov = request.scope["kairo_guard"]
        shared = guard.check(
            [{"text": body.decode("latin-1")}], sink=guard.resolve_sink("t", kind="shared-training")
        )
        return JSONResponse(
            {
                "tenant": before,
                "after": current_tenant(),
                "thread": in_thread,
                "sha256": hashlib.sha256(body).hexdigest(),
                "seal": prov.seal,
                "size": prov.size,
                "shared_rule": shared.violations[0].rule,
                "shared_tenant": shared.violations[0].tenant,
            }
        )

    async def upload(request: Request) -> JSONResponse:
        async with request.form() as form:
            data = await form["file"].read()  # type: ignore[union-attr]
        return JSONResponse(
            {
                "file_sha256": hashlib.sha256(data).hexdigest(),
                "seal": request.scope["kairo_guard"].seal,
            }
        )

    async def whoami(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(current_tenant()))

    async def train(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"accepted for {current_tenant()}", status_code=202)

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok" if started else "not started")

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"{current_tenant()}:{text}")
        await websocket.close()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append(True)
        yield

    app = Starlette(
        routes=[
            Route("/documents", documents, methods=["POST"]),
            Route("/upload", upload, methods=["POST"]),
            Route("/whoami", whoami),
            Route("/train/examples", train, methods=["POST"]),
            Route("/healthz", healthz),
            WebSocketRoute("/ws", ws),
        ],
        lifespan=lifespan,
    )
    options.setdefault(
        "sink_routes",
        {"/train/examples": guard.resolve_sink("router-train", kind="shared-training")},
    )
    options.setdefault("public_paths", ["/healthz"])
    options.setdefault("max_body_bytes", CAP)
    return GuardMiddleware(app, guard=guard, **options)


@pytest.fixture
def keys(guard: Guard) -> dict[str, str]:
    return {t: new_api_key(guard.store, t) for t in ("acme", "globex", "initech", "umbrella")}


@pytest.fixture
def server(guard: Guard, keys: dict[str, str]) -> Iterator[str]:
    with running_server(_app(guard)) as url:
        yield url


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_tenant_context_and_seal_reach_the_handler_and_the_client(
    guard: Guard, keys: dict[str, str], server: str
) -> None:
    body = orjson.dumps({"doc": "Acme supply agreement", "units": 40000})
    response = httpx.post(f"{server}/documents", content=body, headers=_auth(keys["acme"]))
    assert response.status_code == 200
    data = response.json()
    assert (data["tenant"], data["after"], data["thread"]) == ("acme", "acme", "acme")
    assert data["sha256"] == hashlib.sha256(body).hexdigest()
    # a shared sink called inside the request blocks, and knows whose content it was
    assert data["shared_rule"] == "seal.missing"
    assert data["shared_tenant"] == guard.keys.pseudonym("acme")
    header = response.headers["kairo-provenance"]
    assert header == data["seal"]
    label = guard.open_seal(header)
    assert (label.tenant, label.data_class.value, label.digest) == (
        "acme",
        "customer_content",
        hashlib.sha256(body).hexdigest(),
    )


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ([], "missing credentials"),
        ([("authorization", "Bearer kgk.0000000000000000." + "A" * 43)], "invalid or revoked"),
        ([("authorization", "Bearer not-a-key")], "malformed"),
        ([("authorization", "Basic YWNtZTpzZWNyZXQ=")], "unsupported authorization scheme"),
        ([("x-tenant-id", "acme")], "missing credentials"),
        ([("x-kairo-tenant", "acme"), ("x-forwarded-for", "10.0.0.1")], "missing credentials"),
    ],
)
def test_when_credentials_missing_or_invalid_then_401(
    server: str, headers: list[tuple[str, str]], detail: str
) -> None:
    response = httpx.post(f"{server}/documents", content=b"{}", headers=headers)
    assert response.status_code == 401
    assert detail in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "kairo-provenance" not in response.headers


def test_when_credentials_duplicated_or_conflicting_then_401(
    server: str, keys: dict[str, str]
) -> None:
    twice = [
        ("authorization", f"Bearer {keys['acme']}"),
        ("authorization", f"Bearer {keys['acme']}"),
    ]
    both = [("authorization", f"Bearer {keys['acme']}"), ("x-api-key", keys["globex"])]
    for headers in (twice, both):
        response = httpx.post(f"{server}/documents", content=b"{}", headers=headers)
        assert response.status_code == 401
        assert "more than one credential" in response.json()["detail"]


def test_when_key_revoked_then_401(guard: Guard, keys: dict[str, str]) -> None:
    guard.store.revoke_api_keys("acme", now=guard.clock(), key_id=None)
    with running_server(_app(guard)) as url:
        response = httpx.get(f"{url}/whoami", headers=_auth(keys["acme"]))
    assert response.status_code == 401


def test_when_key_revoked_while_running_then_next_request_refused(
    guard: Guard, keys: dict[str, str], tmp_path: Path
) -> None:
    with running_server(_app(guard)) as url:
        first = httpx.get(f"{url}/whoami", headers=_auth(keys["acme"]))
        # Revoked through another connection, as another process (the CLI) would.
        other = open_store(guard.settings)
        try:
            other.revoke_api_keys("acme", now=guard.clock(), key_id=None)
        finally:
            other.close()
        # every process reads the key's record again within REVALIDATE_SECONDS
        time.sleep(REVALIDATE_SECONDS + 0.05)
        second = httpx.get(f"{url}/whoami", headers=_auth(keys["acme"]))
    assert (first.status_code, second.status_code) == (200, 401)


def test_spoofed_tenant_headers_from_untrusted_peer_are_ignored(
    server: str, keys: dict[str, str]
) -> None:
    headers = [
        ("authorization", f"Bearer {keys['acme']}"),
        ("x-tenant-id", "globex"),
        ("x-kairo-tenant", "globex"),
        ("x-kairo-tenant", "initech"),
        ("x-forwarded-for", "10.0.0.7"),
    ]
    response = httpx.get(f"{server}/whoami", headers=headers)
    assert response.status_code == 200
    assert response.text == "acme"


def test_trusted_proxy_header_counts_only_from_trusted_peer(
    guard: Guard, keys: dict[str, str]
) -> None:
    verifier_resolver = ApiKeyResolver(ApiKeyVerifier(guard.store))
    trusted = CompositeResolver([verifier_resolver, TrustedProxyResolver(["127.0.0.1/32"])])
    untrusted = CompositeResolver([verifier_resolver, TrustedProxyResolver(["10.0.0.0/8"])])
    with running_server(_app(guard, resolver=trusted)) as url:
        ok = httpx.get(f"{url}/whoami", headers={"x-kairo-tenant": "globex"})
        assert (ok.status_code, ok.text) == (200, "globex")
        dup = httpx.get(
            f"{url}/whoami", headers=[("x-kairo-tenant", "globex"), ("x-kairo-tenant", "acme")]
        )
        assert dup.status_code == 401
        conflict = httpx.get(
            f"{url}/whoami", headers={"x-kairo-tenant": "globex", **_auth(keys["acme"])}
        )
        assert conflict.status_code == 401
        assert "different tenants" in conflict.json()["detail"]
    with running_server(_app(guard, resolver=untrusted)) as url:
        spoof = httpx.get(
            f"{url}/whoami", headers={"x-kairo-tenant": "globex", "x-forwarded-for": "10.1.2.3"}
        )
        assert spoof.status_code == 401


def test_public_path_needs_no_credentials_and_lifespan_ran(server: str) -> None:
    response = httpx.get(f"{server}/healthz")
    assert (response.status_code, response.text) == (200, "ok")


def test_shared_sink_route_is_refused_with_403_and_audited(
    guard: Guard, server: str, keys: dict[str, str]
) -> None:
    response = httpx.post(
        f"{server}/train/examples", content=b'{"x":1}', headers=_auth(keys["acme"])
    )
    assert response.status_code == 403
    assert "router-train" in response.json()["detail"]
    guard.audit.flush()
    entries = [
        orjson.loads(line)
        for line in (guard.settings.home / "audit" / "audit.jsonl").read_bytes().splitlines()
    ]
    denied = [e for e in entries if e.get("event") == "request" and e.get("status") == 403]
    assert denied
    assert denied[-1]["sink"] == "router-train"
    assert denied[-1]["tenant"] == guard.keys.pseudonym("acme")


def test_tenant_fine_tune_route_admits_only_its_tenant_under_agreement(
    guard: Guard, keys: dict[str, str]
) -> None:
    routes = {"/train/examples": guard.resolve_sink("acme-ft", kind="tenant-fine-tune:acme")}
    with running_server(_app(guard, sink_routes=routes)) as url:

        def post(tenant: str) -> int:
            return httpx.post(f"{url}/whoami", headers=_auth(keys[tenant])).status_code

        assert httpx.post(f"{url}/train/examples", headers=_auth(keys["acme"])).status_code == 403
        guard.grant_agreement("acme")
        assert httpx.post(f"{url}/train/examples", headers=_auth(keys["globex"])).status_code == 403
        accepted = httpx.post(f"{url}/train/examples", headers=_auth(keys["acme"]))
        assert (accepted.status_code, accepted.text) == (202, "accepted for acme")
        assert post("acme") == 405  # other routes are unaffected


def _chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield bytes((sent + i) % 251 for i in range(n))
        sent += n


def test_when_streamed_body_passes_the_cap_then_413(server: str, keys: dict[str, str]) -> None:
    response = httpx.post(
        f"{server}/documents", content=_chunks(CAP + 1), headers=_auth(keys["acme"])
    )
    assert response.status_code == 413
    assert "kairo-provenance" not in response.headers


def test_when_a_client_still_sends_after_the_cap_then_it_reads_the_413_not_a_reset(
    server: str, keys: dict[str, str]
) -> None:
    # the client sends on well past the cap: a server that answered and closed at once
    # would close on unread bytes, and the client would get a reset instead of the 413
    # (the middleware reads up to LINGER_BYTES more, dropping them, before it answers)
    url = httpx.URL(server)
    head = (
        f"POST /documents HTTP/1.1\r\nHost: {url.host}\r\nTransfer-Encoding: chunked\r\n"
        f"Authorization: Bearer {keys['acme']}\r\n\r\n"
    ).encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in _chunks(CAP * 4))
    with socket.create_connection((url.host, url.port), timeout=10) as conn:
        conn.sendall(head + body + b"0\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_when_content_length_passes_the_cap_then_413_before_reading(
    server: str, keys: dict[str, str]
) -> None:
    response = httpx.post(
        f"{server}/documents", content=b"x" * (CAP + 1), headers=_auth(keys["acme"])
    )
    assert response.status_code == 413


def test_chunked_body_at_the_cap_arrives_byte_identical(server: str, keys: dict[str, str]) -> None:
    expected = hashlib.sha256(b"".join(_chunks(CAP))).hexdigest()
    response = httpx.post(f"{server}/documents", content=_chunks(CAP), headers=_auth(keys["acme"]))
    assert response.status_code == 200
    assert response.json()["sha256"] == expected
    assert response.json()["size"] == CAP


def test_multipart_upload_arrives_byte_identical_and_is_sealed(
    guard: Guard, server: str, keys: dict[str, str]
) -> None:
    data = bytes(range(256)) * 50
    response = httpx.post(
        f"{server}/upload",
        files={"file": ("contract.pdf", data, "application/pdf")},
        headers=_auth(keys["globex"]),
    )
    assert response.status_code == 200
    assert response.json()["file_sha256"] == hashlib.sha256(data).hexdigest()
    assert guard.open_seal(response.json()["seal"]).tenant == "globex"


def test_websocket_gets_tenant_context_and_unauthenticated_is_refused(
    server: str, keys: dict[str, str]
) -> None:
    ws_url = server.replace("http://", "ws://") + "/ws"
    with ws_connect(ws_url, additional_headers=_auth(keys["initech"])) as ws:
        ws.send("hello")
        assert ws.recv() == "initech:hello"
    with pytest.raises(Exception, match="403"):
        ws_connect(ws_url, additional_headers={"x-tenant-id": "initech"})


def test_concurrent_interleaved_tenants_never_see_each_other(
    server: str, keys: dict[str, str]
) -> None:
    tenants = list(keys)

    def call(i: int) -> tuple[str, dict[str, Any]]:
        tenant = tenants[i % len(tenants)]
        body = orjson.dumps({"i": i, "tenant": tenant})
        response = httpx.post(
            f"{server}/documents", content=body, headers=_auth(keys[tenant]), timeout=30
        )
        assert response.status_code == 200, response.text
        return tenant, response.json()

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(call, range(240)))
    for tenant, data in results:
        assert (data["tenant"], data["after"], data["thread"]) == (tenant, tenant, tenant)


def test_api_keys_are_stored_as_bcrypt_hashes_at_the_production_work_factor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bcrypt

    from kairo_guard.ingest import apikeys

    monkeypatch.setattr(apikeys, "BCRYPT_ROUNDS", 12)  # the module's value (tests use 4)
    with make_guard(tmp_path / "s") as g:
        key = new_api_key(g.store, "acme")
        record = g.store.get_api_key(key.split(".")[1])
        assert ApiKeyVerifier(g.store).verify(key) == "acme"
        assert ApiKeyVerifier(g.store).verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert record is not None
    secret = key.split(".")[2].encode()
    assert secret not in record.hash
    assert record.kdf == "bcrypt$12"
    assert record.hash.startswith(b"$2b$12$")  # the policy's bcrypt, cost 12
    assert bcrypt.checkpw(secret, record.hash)


def test_keys_hashed_with_scrypt_before_bcrypt_still_verify_damaged_records_refuse(
    tmp_path: Path,
) -> None:
    import dataclasses
    import hashlib
    import secrets

    from kairo_guard.store.base import ApiKeyRecord

    secret, salt = secrets.token_urlsafe(32), secrets.token_bytes(16)
    old = ApiKeyRecord(
        key_id="00112233aabbccdd", tenant="acme", kdf="scrypt$16384$8$1", salt=salt,
        hash=hashlib.scrypt(secret.encode(), salt=salt, n=16384, r=8, p=1, dklen=32),
        created_at=1.0, revoked_at=None,
    )  # fmt: skip
    damaged = [
        dataclasses.replace(old, key_id="00112233aabbcc01", kdf="bcrypt$12", hash=b"$2b$12$x"),
        dataclasses.replace(old, key_id="00112233aabbcc02", kdf="scrypt$x$8$1"),
        dataclasses.replace(old, key_id="00112233aabbcc03", kdf="argon9$1"),
    ]
    with make_guard(tmp_path / "s") as g:
        for record in (old, *damaged):
            g.store.add_api_key(record)
        verifier = ApiKeyVerifier(g.store)
        assert verifier.verify(f"kgk.{old.key_id}.{secret}") == "acme"
        for record in damaged:
            assert verifier.verify(f"kgk.{record.key_id}.{secret}") is None


def test_add_middleware_as_starlette_and_fastapi_users_do(
    guard: Guard, keys: dict[str, str]
) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {current_tenant()}")

    app = Starlette(routes=[Route("/", hello)])
    app.add_middleware(GuardMiddleware, guard=guard)
    with running_server(app) as url:
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers=_auth(keys["umbrella"])).text == "hello umbrella"


def test_request_bodies_are_fingerprinted_so_excerpts_are_caught_later(
    guard: Guard, server: str, keys: dict[str, str]
) -> None:
    from kg_testing import sealed_record

    text = (
        "Acme board minutes: the Lisbon plant doubles output in the third quarter, "
        "forty engineers move to the battery line, and the Porto warehouse closes in "
        "October under an agreement that nobody outside the board has seen yet."
    )
    body = orjson.dumps({"title": "minutes", "text": text})
    assert httpx.post(f"{server}/documents", content=body, headers=_auth(keys["acme"])).is_success
    laundered = sealed_record(
        guard, {"note": "From a public forum: " + text.upper()}, data_class="operator_public"
    )
    report = guard.check([laundered], sink=guard.resolve_sink("s", kind="shared-training"))
    assert [(v.rule, v.tenant) for v in report.violations] == [
        ("fingerprint.tenant-content", guard.keys.pseudonym("acme"))
    ]


def test_websocket_messages_are_fingerprinted_as_the_tenants_content(
    guard: Guard, server: str, keys: dict[str, str]
) -> None:
    from kg_testing import sealed_record

    text = (
        "Initech incident notes: the Porto data centre lost cooling at noon, the failover "
        "to Lisbon took forty minutes, and two customer databases were restored from tape."
    )
    ws_url = server.replace("http://", "ws://") + "/ws"
    with ws_connect(ws_url, additional_headers=_auth(keys["initech"])) as ws:
        ws.send(text)
        assert str(ws.recv()).startswith("initech:")
    copy = sealed_record(guard, {"note": text.upper()}, data_class="operator_public")
    report = guard.check([copy], sink=guard.resolve_sink("s", kind="shared-training"))
    assert [(v.rule, v.tenant) for v in report.violations] == [
        ("fingerprint.tenant-content", guard.keys.pseudonym("initech"))
    ]
