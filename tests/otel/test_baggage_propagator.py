"""TenantBaggagePropagator with the real opentelemetry-instrumentation-httpx.

The instrumented client injects the global propagator after event hooks ran; these
tests send through it to a guarded service (GuardMiddleware over ASGI, the peer
trusted) and read what arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kg_testing import make_guard
from opentelemetry import baggage, context, propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard, KeyRing, TenantBaggagePropagator, current_tenant
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.otel.baggage import httpx_event_hook, token_codec
from kairo_guard.otel.headers import BAGGAGE_KEY, inbound_trace_id, kairo_tokens

TRUSTED = ("127.0.0.1", 40000)


@pytest.fixture
def downstream(tmp_path: Path, ring: KeyRing) -> Iterator[Guard]:
    config = tmp_path / "kairo-guard.toml"
    config.write_text('[propagation]\ntrusted_peers = ["127.0.0.1/32"]\n')
    with make_guard(tmp_path / "down", ring=ring, pii_gate=False, config_file=config) as g:
        yield g


@pytest.fixture
def upstream(tmp_path: Path, ring: KeyRing) -> Iterator[Guard]:
    with make_guard(tmp_path / "up", ring=ring, pii_gate=False) as g:
        yield g


@pytest.fixture
def propagator(upstream: Guard) -> Iterator[TenantBaggagePropagator]:
    ours = TenantBaggagePropagator(upstream)
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator(), ours])
    )
    yield ours
    propagate.set_global_textmap(before)


def _send(guard: Guard, upstream: Guard, *, hook: bool, extra: dict[str, str]) -> Any:
    """From inside acme's context and a job span, with ``extra`` context baggage, call
    the downstream service through an instrumented client; return what it saw."""
    seen: dict[str, Any] = {}

    async def who(request: Request) -> JSONResponse:
        return JSONResponse({"tenant": current_tenant()})

    guarded = GuardMiddleware(Starlette(routes=[Route("/who", who)]), guard=guard)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["headers"] = list(scope["headers"])  # as they arrived, before the guard
        await guarded(scope, receive, send)

    provider = TracerProvider()

    async def go() -> httpx.Response:
        hooks = {"request": [_async(httpx_event_hook(upstream))]} if hook else {}
        transport = httpx.ASGITransport(app=app, client=TRUSTED)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://down", event_hooks=hooks
        ) as client:
            HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
            ctx = context.get_current()
            for key, value in extra.items():
                ctx = baggage.set_baggage(key, value, ctx)
            token = context.attach(ctx)
            try:
                with (
                    provider.get_tracer("job").start_as_current_span("job"),
                    upstream.tenant_context("acme"),
                ):
                    return await client.get("/who")
            finally:
                context.detach(token)

    response = asyncio.run(go())
    return response, seen["headers"]


def _async(hook: Any) -> Any:
    async def run(request: httpx.Request) -> None:
        hook(request)

    return run


def test_without_the_propagator_an_instrumented_client_drops_the_hooks_token(
    downstream: Guard, upstream: Guard
) -> None:
    # why the propagator exists: the W3C baggage propagator rewrites the header
    response, headers = _send(downstream, upstream, hook=True, extra={"user.region": "eu"})
    assert response.status_code == 401
    assert kairo_tokens(headers) == []


@pytest.mark.parametrize("hook", [False, True], ids=["propagator", "propagator+hook"])
@pytest.mark.parametrize("extra", [{}, {"user.region": "eu"}, {BAGGAGE_KEY: "stale"}])
def test_the_propagator_carries_one_fresh_token_through_an_instrumented_client(
    downstream: Guard,
    upstream: Guard,
    propagator: TenantBaggagePropagator,
    hook: bool,
    extra: dict[str, str],
) -> None:
    response, headers = _send(downstream, upstream, hook=hook, extra=extra)
    assert response.status_code == 200
    assert response.json() == {"tenant": "acme"}
    (token,) = kairo_tokens(headers)  # one token, whatever else was there
    trace_id = inbound_trace_id(headers)
    assert trace_id is not None
    assert token_codec(downstream).open(token, trace_id) == "acme"
    if "user.region" in extra:
        assert any(b"user.region=eu" in value for name, value in headers if name == b"baggage")


def test_outside_a_tenant_context_the_propagator_adds_nothing(
    upstream: Guard, propagator: TenantBaggagePropagator
) -> None:
    carrier: dict[str, str] = {"baggage": "a=1"}
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("job"):
        propagator.inject(carrier)
        assert carrier == {"baggage": "a=1"}
        with upstream.tenant_context("acme"):
            propagator.inject(carrier)
    assert carrier["baggage"].startswith(f"a=1,{BAGGAGE_KEY}=kgb1.")
    assert propagator.extract(carrier) == context.Context()  # inbound is the middleware's


def _inject(propagator: TenantBaggagePropagator, carrier: Any, tenant: Guard | None) -> Any:
    """Inject inside a job span, in acme's context when ``tenant`` is given."""
    with TracerProvider().get_tracer("t").start_as_current_span("job"):
        if tenant is None:
            propagator.inject(carrier)
        else:
            with tenant.tenant_context("acme"):
                propagator.inject(carrier)
    return carrier


def test_without_a_tenant_a_kairo_entry_already_there_is_removed(
    upstream: Guard, propagator: TenantBaggagePropagator
) -> None:
    carrier = {"baggage": f"{BAGGAGE_KEY}=kgb1.k1.UPSTREAM,a=1"}
    assert _inject(propagator, carrier, None) == {"baggage": "a=1"}
    assert _inject(propagator, {"baggage": f"{BAGGAGE_KEY}=x"}, None) == {}


def test_bytes_values_and_case_variants_become_one_clean_header(
    upstream: Guard, propagator: TenantBaggagePropagator
) -> None:
    carrier = {
        "Baggage": f"{BAGGAGE_KEY}=kgb1.k1.STALE".encode(),
        "baggage": [b"user.region=eu", "plan=pro"],
    }
    out = _inject(propagator, carrier, upstream)
    assert list(out) == ["baggage"]
    members = out["baggage"].split(",")
    assert members[:2] == ["user.region=eu", "plan=pro"]
    (token,) = kairo_tokens([(b"baggage", out["baggage"].encode())])
    assert token != "kgb1.k1.STALE"


def test_the_token_never_pushes_the_header_past_the_w3c_limit(
    upstream: Guard, propagator: TenantBaggagePropagator
) -> None:
    others = [f"k{i}={'v' * 400}" for i in range(20)]  # 8,089 bytes before the token
    out = _inject(propagator, {"baggage": ",".join(others)}, upstream)
    assert len(out["baggage"].encode()) <= 8192
    members = out["baggage"].split(",")
    assert members[:-1] == others[: len(members) - 1]  # the last ones made room
    assert kairo_tokens([(b"baggage", out["baggage"].encode())])
