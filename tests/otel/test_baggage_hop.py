"""A real two-service hop on loopback: A (API key) calls B, B sees the tenant.

Each service is a real uvicorn server with its own Guard and state directory (in a
thread of this process via ``running_server``, with its own tracer provider; or in its
own process, without an SDK); they share the key ring, as two deployments of one
operator do. A connects to B from 127.0.0.2,
the only address B trusts; the test itself connects from 127.0.0.1, an untrusted peer.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from kg_testing import make_guard, running_server, state_store_env
from otel_support import Sdk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard, KeyRing, current_tenant
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.otel.baggage import async_httpx_event_hook
from kairo_guard.otel.names import ATTR_BAGGAGE, ATTR_TENANT, REQUEST_SPAN

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


SERVICE = """
import os, socket, sys
from pathlib import Path
import httpx, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from kairo_guard import Guard, async_httpx_event_hook, current_tenant
from kairo_guard.ingest.middleware import GuardMiddleware

guard = Guard()

async def who(request):
    return JSONResponse({"tenant": current_tenant()})

async def relay(request):
    transport = httpx.AsyncHTTPTransport(local_address=os.environ["LOCAL_ADDRESS"])
    hooks = {"request": [async_httpx_event_hook(guard)]}
    async with httpx.AsyncClient(transport=transport, event_hooks=hooks) as client:
        answer = await client.get(os.environ["B_URL"] + "/who")
    return JSONResponse({"b": answer.json(), "baggage": answer.request.headers.get("baggage")})

app = GuardMiddleware(Starlette(routes=[Route("/who", who), Route("/relay", relay)]), guard=guard)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(128)  # connections wait in the backlog until uvicorn accepts: no start-up race
port_file = Path(sys.argv[1])
port_file.with_suffix(".tmp").write_text(str(sock.getsockname()[1]))
port_file.with_suffix(".tmp").replace(port_file)
uvicorn.Server(uvicorn.Config(app, log_level="warning", proxy_headers=False)).run(sockets=[sock])
"""


@contextmanager
def _service_process(tmp_path: Path, name: str, env: dict[str, str]) -> Iterator[str]:
    """Run SERVICE in its own Python process; yield its base URL."""
    port_file = tmp_path / f"{name}.port"
    process = subprocess.Popen(
        [sys.executable, "-c", SERVICE, str(port_file)],
        env={"PATH": "/usr/bin:/bin", **env},
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {process.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}"
    finally:
        process.terminate()
        process.communicate(timeout=10)  # reaps it and closes the pipe


def test_two_service_processes_carry_the_tenant_without_an_sdk(
    tmp_path: Path, ring: KeyRing
) -> None:
    # no OpenTelemetry SDK in either process: the trace comes from the caller's
    # traceparent and goes on through the hook
    config = tmp_path / "b.toml"
    config.write_text(f'[propagation]\ntrusted_peers = ["{A_ADDRESS}/32"]\n')
    with make_guard(tmp_path / "a", ring=ring) as guard_a:
        key = new_api_key(guard_a.store, "acme")
    base = {"KAIRO_GUARD_KEY": ring.to_env_value(), "LOCAL_ADDRESS": A_ADDRESS}
    env_b = {**base, "KAIRO_GUARD_HOME": str(tmp_path / "b"), "KAIRO_GUARD_CONFIG": str(config),
             **state_store_env(tmp_path / "b")}  # fmt: skip
    with _service_process(tmp_path, "b", env_b) as b_url:
        env_a = {**base, "KAIRO_GUARD_HOME": str(tmp_path / "a"), "B_URL": b_url,
                 **state_store_env(tmp_path / "a")}  # fmt: skip
        with _service_process(tmp_path, "a", env_a) as a_url:
            traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            headers = {"x-api-key": key, "traceparent": traceparent}
            body = httpx.get(f"{a_url}/relay", headers=headers, timeout=30).json()
            assert body["b"] == {"tenant": "acme"}
            copied = {"baggage": body["baggage"], "traceparent": traceparent}
            direct = httpx.get(f"{b_url}/who", headers=copied, timeout=30)
            assert direct.status_code == 401  # the same token from an untrusted peer
