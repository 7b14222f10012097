"""Signed tenant baggage: the token, the inbound rules, the outbound hook, the context."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kg_testing import make_guard
from opentelemetry import baggage, context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import ConfigError, Guard, KeyRing, current_tenant
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.otel.baggage import (
    TenantTokenCodec,
    TokenRejected,
    bind_guard_context,
    guard_context_submit,
    inject_tenant,
    token_codec,
)
from kairo_guard.otel.headers import BAGGAGE_KEY

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
OTHER_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
TRACEPARENT = f"00-{TRACE:032x}-00f067aa0ba902b7-01"
TRUSTED = ("127.0.0.1", 40000)
UNTRUSTED = ("10.1.2.3", 40000)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def peer_guard(tmp_path: Path, ring: KeyRing, clock: Clock) -> Iterator[Guard]:
    config = tmp_path / "kairo-guard.toml"
    config.write_text('[propagation]\ntrusted_peers = ["127.0.0.1/32"]\ntoken_ttl = 60\n')
    with make_guard(
        tmp_path / "state", ring=ring, pii_gate=False, config_file=config, clock=clock
    ) as g:
        yield g


# -- the token -----------------------------------------------------------------------


def test_token_round_trips_and_hides_the_tenant(ring: KeyRing) -> None:
    codec = TenantTokenCodec(ring)
    token = codec.issue("acme-corp", TRACE)
    assert codec.open(token, TRACE) == "acme-corp"
    assert "acme" not in token
    assert codec.issue("acme-corp", TRACE) != token  # a fresh nonce each time


def _flip(token: str) -> str:
    head, payload = token.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[-1] ^= 1
    return f"{head}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda c, o: "acme", "malformed"),  # a raw, unsigned tenant id
        (lambda c, o: "kgb1.k1.AAAA", "invalid-or-other-trace"),
        (lambda c, o: _flip(c.issue("acme", TRACE)), "invalid-or-other-trace"),
        (lambda c, o: c.issue("acme", OTHER_TRACE), "invalid-or-other-trace"),
        (lambda c, o: o.issue("acme", TRACE), "invalid-or-other-trace"),  # other key
        (lambda c, o: "kgb1.nokey.AAAA", "unknown-key"),
        (lambda c, o: "kgb1.k1.!!!", "malformed"),
    ],
    ids=["unsigned", "forged", "tampered", "other-trace", "other-key", "unknown-key", "junk"],
)
def test_bad_tokens_never_open(make: Any, reason: str) -> None:
    ring = KeyRing.generate("k1")
    codec, other = TenantTokenCodec(ring), TenantTokenCodec(KeyRing.generate("k1"))
    with pytest.raises(TokenRejected) as caught:
        codec.open(make(codec, other), TRACE)
    assert caught.value.reason == reason


def test_expired_token_is_rejected(ring: KeyRing, clock: Clock) -> None:
    codec = TenantTokenCodec(ring, ttl=60, clock=clock)
    token = codec.issue("acme", TRACE)
    clock.now += 59
    assert codec.open(token, TRACE) == "acme"
    clock.now += 1
    with pytest.raises(TokenRejected, match="expired"):
        codec.open(token, TRACE)


def test_tokens_open_after_key_rotation(ring: KeyRing) -> None:
    token = TenantTokenCodec(ring).issue("acme", TRACE)
    rotated = KeyRing(
        keys={"k9": b"n" * 32, **ring.keys},
        signing_key_id="k9",
        pseudonym_key_id=ring.pseudonym_key_id,
    )
    assert TenantTokenCodec(rotated).open(token, TRACE) == "acme"


@pytest.mark.parametrize(
    ("issued_ahead", "ttl", "reason"),
    [(120, 60, "bad-lifetime"), (0, 3600, "bad-lifetime"), (4, 60, None)],
    ids=["issued-in-the-future", "longer-life-than-ours", "within-the-leeway"],
)
def test_a_token_must_not_claim_more_time_than_this_service_allows(
    ring: KeyRing, clock: Clock, issued_ahead: int, ttl: int, reason: str | None
) -> None:
    ahead = Clock()
    ahead.now = clock.now + issued_ahead
    token = TenantTokenCodec(ring, ttl=ttl, clock=ahead).issue("acme", TRACE)
    ours = TenantTokenCodec(ring, ttl=60, clock=clock)
    if reason is None:
        assert ours.open(token, TRACE) == "acme"
        return
    with pytest.raises(TokenRejected) as caught:
        ours.open(token, TRACE)
    assert caught.value.reason == reason


def test_a_fast_clock_does_not_carry_a_token_past_an_erasure(ring: KeyRing, clock: Clock) -> None:
    ahead = Clock()
    ahead.now = clock.now + 120  # the peer's clock runs two minutes fast
    token = TenantTokenCodec(ring, ttl=600, clock=ahead).issue("acme", TRACE)
    erased = clock.now + 5  # erased after the token was made, before its claimed time
    ours = TenantTokenCodec(ring, ttl=600, clock=clock, erased_at=lambda t: erased)
    clock.now += 6
    with pytest.raises(TokenRejected):
        ours.open(token, TRACE)


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize("body", ['trusted_peers = ["not-an-ip"]', "token_ttl = 0", "unknown = 1"])
def test_bad_propagation_config_is_refused(tmp_path: Path, ring: KeyRing, body: str) -> None:
    config = tmp_path / "kairo-guard.toml"
    config.write_text(f"[propagation]\n{body}\n")
    with pytest.raises(ConfigError, match="propagation"):
        make_guard(tmp_path / "s", ring=ring, config_file=config)


def test_propagation_defaults(guard: Guard) -> None:
    assert guard.settings.propagation.trusted_peers == []
    assert guard.settings.propagation.token_ttl == 300


# -- inbound -------------------------------------------------------------------------


def _service(guard: Guard) -> GuardMiddleware:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "tenant": current_tenant(),
                "baggage": request.headers.getlist("baggage"),
                "otel_kairo": baggage.get_baggage(BAGGAGE_KEY),
            }
        )

    return GuardMiddleware(Starlette(routes=[Route("/who", whoami)]), guard=guard)


def _call(guard: Guard, headers: dict[str, str], client: tuple[str, int]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=_service(guard), client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
            return await http.get("/who", headers=headers)

    return asyncio.run(go())


def _token(guard: Guard, tenant: str = "acme", trace_id: int = TRACE) -> str:
    return token_codec(guard).issue(tenant, trace_id)


def _audited(guard: Guard) -> list[dict[str, Any]]:
    guard.audit.flush()
    entries = []
    for path in sorted((guard.settings.home / "audit").glob("*.jsonl")):
        entries += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [e for e in entries if e.get("event") == "baggage.rejected"]


def test_valid_token_from_a_trusted_peer_sets_the_tenant(peer_guard: Guard) -> None:
    headers = {"traceparent": TRACEPARENT, "baggage": f"{BAGGAGE_KEY}={_token(peer_guard)}"}
    response = _call(peer_guard, headers, TRUSTED)
    assert response.status_code == 200
    assert response.json() == {"tenant": "acme", "baggage": [], "otel_kairo": None}


def test_a_token_issued_before_the_tenant_was_erased_sets_no_tenant(peer_guard: Guard) -> None:
    headers = {"traceparent": TRACEPARENT, "baggage": f"{BAGGAGE_KEY}={_token(peer_guard)}"}
    peer_guard.erase_tenant("acme")
    response = _call(peer_guard, headers, TRUSTED)
    assert response.status_code == 401
    assert [e["reason"] for e in _audited(peer_guard)] == ["tenant-erased"]


@pytest.mark.parametrize(
    ("token", "traceparent", "client", "reason"),
    [
        ("good", TRACEPARENT, UNTRUSTED, "untrusted-peer"),
        ("acme", TRACEPARENT, TRUSTED, "malformed"),
        ("forged", TRACEPARENT, TRUSTED, "invalid-or-other-trace"),
        ("other-trace", TRACEPARENT, TRUSTED, "invalid-or-other-trace"),
        ("other-key", TRACEPARENT, TRUSTED, "invalid-or-other-trace"),
        ("good", None, TRUSTED, "no-trace"),
        ("expired", TRACEPARENT, TRUSTED, "expired"),
    ],
)
def test_bad_baggage_never_sets_a_tenant_and_is_audited(
    peer_guard: Guard,
    clock: Clock,
    token: str,
    traceparent: str | None,
    client: tuple[str, int],
    reason: str,
) -> None:
    value = {
        "good": _token(peer_guard),
        "acme": "acme",
        "forged": "kgb1.k1." + "A" * 60,
        "other-trace": _token(peer_guard, trace_id=OTHER_TRACE),
        "other-key": TenantTokenCodec(KeyRing.generate(peer_guard.keys.signing_key_id)).issue(
            "acme", TRACE
        ),
        "expired": _token(peer_guard),
    }[token]
    if token == "expired":
        clock.now += 61
    headers = {"baggage": f"{BAGGAGE_KEY}={value}"}
    if traceparent:
        headers["traceparent"] = traceparent
    response = _call(peer_guard, headers, client)
    assert response.status_code == 401  # no other credential: no tenant at all
    assert [e["reason"] for e in _audited(peer_guard)] == [reason]


def test_untrusted_baggage_is_stripped_before_the_app_but_other_entries_stay(
    peer_guard: Guard,
) -> None:
    key = new_api_key(peer_guard.store, "globex")
    headers = {
        "x-api-key": key,
        "traceparent": TRACEPARENT,
        "baggage": f"user.region=eu,{BAGGAGE_KEY}={_token(peer_guard)}",
    }
    response = _call(peer_guard, headers, UNTRUSTED)
    assert response.status_code == 200
    assert response.json() == {"tenant": "globex", "baggage": ["user.region=eu"],
                               "otel_kairo": None}  # fmt: skip


def test_valid_token_and_api_key_of_another_tenant_conflict(peer_guard: Guard) -> None:
    key = new_api_key(peer_guard.store, "globex")
    headers = {
        "x-api-key": key,
        "traceparent": TRACEPARENT,
        "baggage": f"{BAGGAGE_KEY}={_token(peer_guard, 'acme')}",
    }
    response = _call(peer_guard, headers, TRUSTED)
    assert response.status_code == 401
    assert "different tenants" in response.json()["detail"]


def test_two_kairo_entries_are_refused(peer_guard: Guard) -> None:
    token = _token(peer_guard)
    headers = {"traceparent": TRACEPARENT, "baggage": f"{BAGGAGE_KEY}={token},{BAGGAGE_KEY}=x"}
    assert _call(peer_guard, headers, TRUSTED).status_code == 401
    assert [e["reason"] for e in _audited(peer_guard)] == ["duplicate"]


@pytest.mark.parametrize(
    "entry", ["kairo%2Etenant={token}", "kairo%2etenant={token}", "kairo.tenant = {token} ;p=1"]
)
def test_an_encoded_or_spaced_kairo_key_is_stripped_like_the_plain_one(
    peer_guard: Guard, entry: str
) -> None:
    # the W3C propagator decodes keys: left in, it would become a kairo token again
    # in any context the app extracts, and go downstream from a trusted service
    key = new_api_key(peer_guard.store, "globex")
    headers = {
        "x-api-key": key,
        "traceparent": TRACEPARENT,
        "baggage": "user.region=eu," + entry.format(token=_token(peer_guard)),
    }
    response = _call(peer_guard, headers, UNTRUSTED)
    assert response.status_code == 200
    assert response.json() == {"tenant": "globex", "baggage": ["user.region=eu"],
                               "otel_kairo": None}  # fmt: skip
    assert [e["reason"] for e in _audited(peer_guard)] == ["untrusted-peer"]


@pytest.mark.parametrize("entry", [BAGGAGE_KEY, f"{BAGGAGE_KEY};p=1", f"{BAGGAGE_KEY}="])
def test_a_kairo_entry_without_a_value_is_refused_not_a_crash(
    peer_guard: Guard, entry: str
) -> None:
    headers = {"traceparent": TRACEPARENT, "baggage": f"user.region=eu,{entry}"}
    assert _call(peer_guard, headers, TRUSTED).status_code == 401
    assert [e["reason"] for e in _audited(peer_guard)] == ["malformed"]
    key = new_api_key(peer_guard.store, "globex")
    response = _call(peer_guard, {**headers, "x-api-key": key}, UNTRUSTED)
    assert response.status_code == 200
    assert response.json()["baggage"] == ["user.region=eu"]


# -- outbound and context helpers ----------------------------------------------------


def test_hook_injects_a_fresh_token_for_the_current_trace(guard: Guard) -> None:
    provider = TracerProvider()
    headers = httpx.Headers({"baggage": f"a=1,{BAGGAGE_KEY}=stale"})
    with (
        provider.get_tracer("t").start_as_current_span("job") as span,
        guard.tenant_context("acme"),
    ):
        assert inject_tenant(headers, token_codec(guard))
    trace_id = span.get_span_context().trace_id
    assert headers["traceparent"].split("-")[1] == f"{trace_id:032x}"
    first, kairo = headers["baggage"].split(",")
    assert first == "a=1"
    assert token_codec(guard).open(kairo.split("=", 1)[1], trace_id) == "acme"


def test_hook_keeps_the_header_within_the_w3c_limit(guard: Guard) -> None:
    others = [f"k{i}={'v' * 400}" for i in range(20)]
    headers = httpx.Headers({"baggage": ",".join(others)})
    with (
        TracerProvider().get_tracer("t").start_as_current_span("job"),
        guard.tenant_context("acme"),
    ):
        assert inject_tenant(headers, token_codec(guard))
    assert len(headers["baggage"].encode()) <= 8192
    *kept, kairo = headers["baggage"].split(",")
    assert kept == others[: len(kept)]
    assert kairo.startswith(f"{BAGGAGE_KEY}=kgb1.")


def test_hook_outside_a_tenant_context_forwards_no_kairo_baggage(guard: Guard) -> None:
    headers = httpx.Headers({"baggage": f"{BAGGAGE_KEY}=copied"})
    assert not inject_tenant(headers, token_codec(guard))
    assert "baggage" not in headers


def test_hook_without_a_trace_adds_no_token(guard: Guard) -> None:
    headers = httpx.Headers()
    with guard.tenant_context("acme"):
        assert not trace.get_current_span().get_span_context().is_valid
        assert not inject_tenant(headers, token_codec(guard))
    assert "baggage" not in headers


def test_thread_pools_keep_the_tenant_with_the_helpers(guard: Guard) -> None:
    with ThreadPoolExecutor(1) as pool, guard.tenant_context("acme"):
        assert pool.submit(current_tenant).result() is None  # the plain way loses it
        assert guard_context_submit(pool, current_tenant).result() == "acme"
        bound = bind_guard_context(current_tenant)
    assert current_tenant() is None
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(bound).result() == "acme"


def test_asyncio_tasks_and_executors_keep_the_tenant(guard: Guard) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        with guard.tenant_context("acme"):
            task = asyncio.create_task(asyncio.sleep(0, current_tenant()))
            plain = loop.run_in_executor(None, current_tenant)
            bound = loop.run_in_executor(None, bind_guard_context(current_tenant))
        return await task, await plain, await bound

    assert asyncio.run(main()) == ("acme", None, "acme")


@pytest.mark.parametrize("public", [False, True], ids=["authenticated", "public-path"])
def test_kairo_baggage_a_host_extracted_into_the_context_is_removed(
    peer_guard: Guard, public: bool
) -> None:
    class HostPropagation:
        """What a host's ASGI instrumentation does: extract W3C baggage into the
        context around the app (the real W3C propagator of the API)."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            carrier = {k.decode(): v.decode() for k, v in scope["headers"]}
            token = context.attach(W3CBaggagePropagator().extract(carrier))
            try:
                await self.app(scope, receive, send)
            finally:
                context.detach(token)

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "kairo": baggage.get_baggage(BAGGAGE_KEY),
                "region": baggage.get_baggage("region"),
                "header": request.headers.getlist("baggage"),
            }
        )

    key = new_api_key(peer_guard.store, "globex")
    # a health check is served unauthenticated, but it must not relay a token either
    public_paths = ["/who"] if public else []
    app = HostPropagation(
        GuardMiddleware(
            Starlette(routes=[Route("/who", whoami)]), guard=peer_guard, public_paths=public_paths
        )
    )

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=UNTRUSTED)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
            headers = {"x-api-key": key, "baggage": f"region=eu,{BAGGAGE_KEY}=copied"}
            return await http.get("/who", headers=headers)

    assert asyncio.run(go()).json() == {"kairo": None, "region": "eu", "header": ["region=eu"]}
