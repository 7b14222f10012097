"""Request decisions of GuardMiddleware as spans: the host's server span, or one of ours."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from kg_testing import make_guard, running_server
from opentelemetry import context, trace
from otel_support import Sdk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard, KeyRing, make_sink
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.otel.names import (
    ATTR_DECISION,
    ATTR_STATUS,
    ATTR_TENANT,
    CHECK_SPAN,
    METRIC_BYTES,
    METRIC_REQUESTS,
    REQUEST_SPAN,
)
from kairo_guard.otel.request_span import DENIED_EVENT, HTTP_STATUS

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _app(guard: Guard) -> GuardMiddleware:
    async def ingest(request: Request) -> JSONResponse:
        body = await request.body()
        report = guard.check(
            [{"text": body.decode()}], sink=make_sink("t", "shared-training"), mode="filter"
        )
        return JSONResponse({"blocked": report.blocked})

    app = Starlette(routes=[Route("/ingest", ingest, methods=["POST"])])
    return GuardMiddleware(app, guard=guard)


class _HostInstrumentation:
    """What opentelemetry-instrumentation-asgi does for a host (not installed here):
    a SERVER span, current around the app, built with the real SDK tracer."""

    def __init__(self, app: Any, sdk: Sdk) -> None:
        self.app = app
        self.tracer = sdk.tracer_provider.get_tracer("host")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        with self.tracer.start_as_current_span("POST /ingest", kind=trace.SpanKind.SERVER):
            await self.app(scope, receive, send)


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(5):
        yield b"x" * 1000
        await asyncio.sleep(0)


def _post(app: Any, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            return await client.post("/ingest", **kwargs)

    return asyncio.run(go())


def test_without_a_server_span_one_request_span_of_ours_for_a_chunked_body(
    traced: Guard, sdk: Sdk
) -> None:
    key = new_api_key(traced.store, "acme")
    response = _post(
        _app(traced),
        content=_chunks(),
        headers={"authorization": f"Bearer {key}", "traceparent": TRACEPARENT},
    )
    assert response.status_code == 200
    (request_span,) = sdk.finished(REQUEST_SPAN)
    assert request_span.kind is trace.SpanKind.SERVER  # the service's entry span
    attrs = request_span.attributes
    assert attrs["http.request.method"] == "POST"
    assert attrs[ATTR_TENANT] == traced.keys.pseudonym("acme")
    assert (attrs[HTTP_STATUS], attrs[ATTR_DECISION]) == (200, "allow")
    ((_, size),) = sdk.points(METRIC_BYTES)
    assert size.value == 5000
    assert f"{request_span.context.trace_id:032x}" == TRACEPARENT.split("-")[1]
    (check,) = sdk.finished(CHECK_SPAN)
    assert check.parent.span_id == request_span.context.span_id  # the handler joins it
    assert len(sdk.finished()) == 2
    assert "acme" not in repr(dict(attrs))


def test_refused_request_is_a_deny_with_one_event(traced: Guard, sdk: Sdk) -> None:
    response = _post(_app(traced), content=b"{}")
    assert response.status_code == 401
    (span,) = sdk.finished(REQUEST_SPAN)
    assert span.attributes[ATTR_DECISION] == "deny"
    (event,) = span.events
    assert event.name == DENIED_EVENT
    assert event.attributes[ATTR_STATUS] == 401
    points = {(a[ATTR_DECISION], a[ATTR_STATUS]): p.value for a, p in sdk.points(METRIC_REQUESTS)}
    assert points == {("deny", 401): 1}


def test_with_a_host_server_span_decisions_go_onto_it(traced: Guard, sdk: Sdk) -> None:
    key = new_api_key(traced.store, "acme")
    app = _HostInstrumentation(_app(traced), sdk)
    response = _post(app, content=b"hello", headers={"x-api-key": key})
    assert response.status_code == 200
    assert sdk.finished(REQUEST_SPAN) == []
    (server,) = [s for s in sdk.finished() if s.kind is trace.SpanKind.SERVER]
    assert server.attributes[ATTR_TENANT] == traced.keys.pseudonym("acme")
    assert server.attributes[ATTR_DECISION] == "allow"
    assert ATTR_STATUS not in server.attributes  # the status is the host's to set
    (check,) = sdk.finished(CHECK_SPAN)
    assert check.parent.span_id == server.context.span_id


def test_context_is_restored_after_the_request(traced: Guard, sdk: Sdk) -> None:
    before = context.get_current()
    _post(_app(traced), content=b"{}")
    assert context.get_current() == before


def test_over_real_uvicorn_one_span_per_request(traced: Guard, sdk: Sdk) -> None:
    key = new_api_key(traced.store, "acme")
    with running_server(_app(traced)) as url:
        for _ in range(3):
            response = httpx.post(
                f"{url}/ingest", content=b"a" * 70_000, headers={"x-api-key": key}
            )
            assert response.status_code == 200
    assert len(sdk.wait_for(REQUEST_SPAN, 3)) == 3
    assert len(sdk.finished(CHECK_SPAN)) == 3


def _trace_app(guard: Guard, seen: list[Any]) -> GuardMiddleware:
    async def ingest(request: Request) -> JSONResponse:
        seen.append(trace.get_current_span().get_span_context())
        return JSONResponse({})

    return GuardMiddleware(Starlette(routes=[Route("/ingest", ingest, methods=["POST"])]),
                           guard=guard)  # fmt: skip


def test_without_an_sdk_the_inbound_traceparent_is_current_for_the_app(guard: Guard) -> None:
    # the guard fixture has no providers and no global SDK is set: no span, but the
    # caller's trace goes on (outbound calls and baggage tokens need it)
    key = new_api_key(guard.store, "acme")
    seen: list[Any] = []
    response = _post(
        _trace_app(guard, seen), content=b"{}",
        headers={"x-api-key": key, "traceparent": TRACEPARENT},
    )  # fmt: skip
    assert response.status_code == 200
    (span_context,) = seen
    assert f"{span_context.trace_id:032x}" == TRACEPARENT.split("-")[1]
    assert f"{span_context.span_id:016x}" == TRACEPARENT.split("-")[2]
    assert span_context.is_remote
    assert context.get_current() == context.Context()


def test_a_no_op_tracer_provider_turns_the_guards_tracing_off(
    tmp_path: Path, ring: KeyRing, sdk: Sdk
) -> None:
    with make_guard(
        tmp_path / "state",
        ring=ring,
        pii_gate=False,
        tracer_provider=trace.NoOpTracerProvider(),
        meter_provider=sdk.meter_provider,
    ) as quiet:
        key = new_api_key(quiet.store, "acme")
        app = _HostInstrumentation(_app(quiet), sdk)
        response = _post(app, content=b"hello", headers={"x-api-key": key})
        assert response.status_code == 200
    (server,) = sdk.finished()  # the host's span alone, not decorated; no check span
    assert server.kind is trace.SpanKind.SERVER
    assert not any(k.startswith("kairo_guard.") for k in server.attributes or {})
    points = {(a[ATTR_DECISION], a[ATTR_STATUS]): p.value for a, p in sdk.points(METRIC_REQUESTS)}
    assert points == {("allow", 200): 1}  # the metrics are kept all the same


def test_a_context_a_host_already_extracted_is_the_parent_of_our_span(
    traced: Guard, sdk: Sdk
) -> None:
    remote = trace.SpanContext(0xABC, 0xDEF, is_remote=True,
                               trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))  # fmt: skip

    class HostPropagation:
        """A host that extracted the caller's context (and made no span)."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            ctx = trace.set_span_in_context(trace.NonRecordingSpan(remote))
            token = context.attach(ctx)
            try:
                await self.app(scope, receive, send)
            finally:
                context.detach(token)

    key = new_api_key(traced.store, "acme")
    response = _post(
        HostPropagation(_app(traced)), content=b"{}",
        headers={"x-api-key": key, "traceparent": TRACEPARENT},  # not looked at again
    )  # fmt: skip
    assert response.status_code == 200
    (ours,) = sdk.finished(REQUEST_SPAN)
    assert (ours.context.trace_id, ours.parent.span_id) == (0xABC, 0xDEF)


class _BrokenProvider(trace.TracerProvider):
    """A tracer provider whose tracer cannot be had (a misconfigured SDK)."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise RuntimeError("exporter misconfigured")


def test_a_provider_that_fails_never_breaks_the_request(tmp_path: Path, ring: KeyRing) -> None:
    with make_guard(
        tmp_path / "state", ring=ring, pii_gate=False, tracer_provider=_BrokenProvider()
    ) as broken:
        key = new_api_key(broken.store, "acme")
        response = _post(_app(broken), content=b"hello", headers={"x-api-key": key})
    assert response.status_code == 200
    assert response.json() == {"blocked": 1}


def test_request_span_off_makes_no_span_of_ours_but_keeps_the_trace_and_host_spans(
    traced: Guard, sdk: Sdk
) -> None:
    quiet = GuardMiddleware(_app(traced).app, guard=traced, request_span=False)
    key = new_api_key(traced.store, "acme")
    headers = {"x-api-key": key, "traceparent": TRACEPARENT}
    assert _post(quiet, content=b"hello", headers=headers).json() == {"blocked": 1}
    assert sdk.finished(REQUEST_SPAN) == []
    (check,) = sdk.finished(CHECK_SPAN)  # still in the caller's trace
    assert f"{check.context.trace_id:032x}" == TRACEPARENT.split("-")[1]
    assert f"{check.parent.span_id:016x}" == TRACEPARENT.split("-")[2]
    response = _post(_HostInstrumentation(quiet, sdk), content=b"x", headers={"x-api-key": key})
    assert response.status_code == 200
    (server,) = [s for s in sdk.finished() if s.kind is trace.SpanKind.SERVER]
    assert server.attributes[ATTR_DECISION] == "allow"  # a host's span is still decorated
    points = {(a[ATTR_DECISION], a[ATTR_STATUS]): p.value for a, p in sdk.points(METRIC_REQUESTS)}
    assert points == {("allow", 200): 2}
