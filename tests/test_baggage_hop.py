"""A real two-service hop on loopback: A (API key) calls B, B sees the tenant.

Each service is a real uvicorn server (in a thread of this process, via
``running_server``) with its own Guard, state directory and tracer provider; they share
the key ring, as two deployments of one operator do. A connects to B from 127.0.0.2,
the only address B trusts; the test itself connects from 127.0.0.1, an untrusted peer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from otel_support import Sdk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard, KeyRing, current_tenant
from kairo_guard.apikeys import new_api_key
from kairo_guard.baggage import async_httpx_event_hook
from kairo_guard.middleware import GuardMiddleware
from kairo_guard.otel import ATTR_BAGGAGE, ATTR_TENANT, REQUEST_SPAN
from kairo_guard.testing import make_guard, running_server

A_ADDRESS = "127.0.0.2"


def _service_b(guard: Guard) -> GuardMiddleware:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"tenant": current_tenant()})

    return GuardMiddleware(Starlette(routes=[Route("/who", whoami)]), guard=guard)


def _service_a(guard: Guard, b_url: str) -> GuardMiddleware:
    async def relay(request: Request) -> JSONResponse:
        transport = httpx.AsyncHTTPTransport(local_address=A_ADDRESS)
        hooks: dict[str, list[Any]] = {"request": [async_httpx_event_hook(guard)]}
        async with httpx.AsyncClient(transport=transport, event_hooks=hooks) as client:
            answer = await client.get(f"{b_url}/who")
        sent = answer.request.headers
        return JSONResponse(
            {
                "status": answer.status_code,
                "b": answer.json(),
                "baggage": sent.get("baggage"),
                "traceparent": sent.get("traceparent"),
            }
        )

    return GuardMiddleware(Starlette(routes=[Route("/relay", relay)]), guard=guard)


def _baggage_outcomes(hop: dict[str, Any]) -> list[str]:
    spans = hop["sdk_b"].wait_for(REQUEST_SPAN, 2)
    return sorted(s.attributes[ATTR_BAGGAGE] for s in spans)


@pytest.fixture
def hop(tmp_path: Path, ring: KeyRing) -> Iterator[dict[str, Any]]:
    config = tmp_path / "b.toml"
    config.write_text(f'[propagation]\ntrusted_peers = ["{A_ADDRESS}/32"]\n')
    sdk_a, sdk_b = Sdk(), Sdk()
    with (
        make_guard(tmp_path / "a", ring=ring, pii_gate=False,
                   tracer_provider=sdk_a.tracer_provider) as guard_a,
        make_guard(tmp_path / "b", ring=ring, pii_gate=False, config_file=config,
                   tracer_provider=sdk_b.tracer_provider) as guard_b,
        running_server(_service_b(guard_b)) as b_url,
        running_server(_service_a(guard_a, b_url)) as a_url,
    ):  # fmt: skip
        key = new_api_key(guard_a.store, "acme")
        yield {"a": a_url, "b": b_url, "key": key, "sdk_a": sdk_a, "sdk_b": sdk_b,
               "guard_b": guard_b}  # fmt: skip


def test_the_tenant_context_crosses_the_hop_in_one_trace(hop: dict[str, Any]) -> None:
    response = httpx.get(f"{hop['a']}/relay", headers={"x-api-key": hop["key"]})
    body = response.json()
    assert (body["status"], body["b"]) == (200, {"tenant": "acme"})
    assert "acme" not in body["baggage"]
    (span_a,) = hop["sdk_a"].wait_for(REQUEST_SPAN, 1)
    (span_b,) = hop["sdk_b"].wait_for(REQUEST_SPAN, 1)
    assert span_a.context.trace_id == span_b.context.trace_id
    assert span_b.parent.span_id == span_a.context.span_id
    assert span_b.attributes[ATTR_BAGGAGE] == "accepted"
    assert span_b.attributes[ATTR_TENANT] == hop["guard_b"].keys.pseudonym("acme")


def test_a_copied_token_sent_straight_to_b_sets_no_tenant(hop: dict[str, Any]) -> None:
    body = httpx.get(f"{hop['a']}/relay", headers={"x-api-key": hop["key"]}).json()
    copied = {"baggage": body["baggage"], "traceparent": body["traceparent"]}
    direct = httpx.get(f"{hop['b']}/who", headers=copied)  # from 127.0.0.1: untrusted
    assert direct.status_code == 401
    assert _baggage_outcomes(hop) == ["accepted", "untrusted-peer"]


def test_a_copied_token_in_another_trace_is_refused_even_from_a(hop: dict[str, Any]) -> None:
    body = httpx.get(f"{hop['a']}/relay", headers={"x-api-key": hop["key"]}).json()
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    transport = httpx.HTTPTransport(local_address=A_ADDRESS)
    with httpx.Client(transport=transport) as client:
        direct = client.get(
            f"{hop['b']}/who", headers={"baggage": body["baggage"], "traceparent": other}
        )
    assert direct.status_code == 401
    assert _baggage_outcomes(hop) == ["accepted", "invalid-or-other-trace"]
