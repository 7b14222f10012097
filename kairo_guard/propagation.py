"""The middleware's side of tracing: the request's span and inbound baggage hygiene.

Decisions of a request go onto the server span of the host (set by an ASGI
instrumentation) when one is recording; otherwise the middleware makes one span of its
own per request (``kairo_guard.request``, INTERNAL), under the caller's ``traceparent``,
and makes it current so that the checks and outbound calls of the handler join the
trace. Never a span per body chunk.

Kairo baggage (:data:`BAGGAGE_KEY`) is removed from the request before the app runs,
from the ``baggage`` header and from the OpenTelemetry context alike: the app and its
own outbound calls never see or forward a token; only a verified token sets the tenant
(see :mod:`kairo_guard.baggage`), and the outbound hook mints a fresh one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

from opentelemetry import baggage, context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kairo_guard.otel import (
    ATTR_BYTES,
    ATTR_DECISION,
    ATTR_REASON,
    ATTR_SINK,
    ATTR_STATUS,
    ATTR_TENANT,
    METRIC_BYTES,
    METRIC_REQUESTS,
    REQUEST_SPAN,
    GuardTelemetry,
)

BAGGAGE_KEY = "kairo.tenant"
"""The W3C baggage entry that carries the signed tenant token."""
BAGGAGE_HEADER = b"baggage"
SCOPE_TRACE_KEY = "kairo_guard.trace"
"""Scope key of the request's :class:`RequestTrace`."""
DENIED_EVENT = "kairo_guard.request.denied"
ATTR_SOURCE = "kairo_guard.source"

_TRACE_CONTEXT = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})


def trace_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The ``traceparent``/``tracestate`` headers as a carrier for the propagator."""
    carrier: dict[str, str] = {}
    for name, value in headers:
        if name in _TRACE_HEADERS:
            carrier.setdefault(name.decode(), value.decode("latin-1"))
    return carrier


def inbound_trace_id(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """The W3C trace id the request's ``traceparent`` names, or None."""
    ctx = _TRACE_CONTEXT.extract(trace_headers(headers))
    span_context = trace.get_current_span(ctx).get_span_context()
    return span_context.trace_id if span_context.is_valid else None


def split_baggage(value: str) -> list[tuple[str, str]]:
    """The ``(key, member)`` pairs of one ``baggage`` header value (members kept whole)."""
    members = []
    for member in value.split(","):
        text = member.strip()
        if text:
            members.append((text.split("=", 1)[0].split(";", 1)[0].strip(), text))
    return members


def kairo_tokens(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every kairo baggage value in the request's ``baggage`` headers, in order."""
    found = []
    for name, raw in headers:
        if name == BAGGAGE_HEADER:
            for key, member in split_baggage(raw.decode("latin-1")):
                if key == BAGGAGE_KEY:
                    found.append(member.split("=", 1)[1].split(";", 1)[0].strip())
    return found


def strip_kairo_baggage(scope: MutableMapping[str, Any]) -> None:
    """Remove kairo baggage from the scope's ``baggage`` headers (others are kept)."""
    headers = scope.get("headers") or ()
    if not any(name == BAGGAGE_HEADER for name, _ in headers):
        return
    kept = []
    for name, raw in headers:
        if name == BAGGAGE_HEADER:
            members = split_baggage(raw.decode("latin-1"))
            rest = ",".join(member for key, member in members if key != BAGGAGE_KEY)
            if not rest:
                continue
            raw = rest.encode("latin-1")
        kept.append((name, raw))
    scope["headers"] = kept


class RequestTrace:
    """The tracing state of one request: whose span, what was decided."""

    __slots__ = ("_attributes", "_ours", "_span", "_telemetry", "_token", "status")

    def __init__(self, telemetry: GuardTelemetry, scope: MutableMapping[str, Any]) -> None:
        """Find or start the request's span, make it current, drop inbound kairo baggage
        from the context, and register in ``scope``."""
        self._telemetry = telemetry
        self._attributes: dict[str, Any] = {}
        self.status: int | None = None
        current = trace.get_current_span()
        ctx = context.get_current()
        self._ours = not current.is_recording()
        if self._ours:
            carrier = trace_headers(scope.get("headers", ()))
            if carrier:
                ctx = _TRACE_CONTEXT.extract(carrier, ctx)
            try:
                current = telemetry.tracer.start_span(REQUEST_SPAN, context=ctx)
            except Exception:  # noqa: BLE001 - telemetry never breaks the host
                current = trace.get_current_span(ctx)
            if current is not trace.INVALID_SPAN:
                ctx = trace.set_span_in_context(current, ctx)
        self._span = current
        if baggage.get_baggage(BAGGAGE_KEY, ctx) is not None:
            ctx = baggage.remove_baggage(BAGGAGE_KEY, ctx)
        self._token = context.attach(ctx)
        scope[SCOPE_TRACE_KEY] = self

    def note(self, **attributes: Any) -> None:
        """Record decision attributes (``kairo_guard.*`` names) for the request's span;
        they are set on it once, at the end."""
        for key, value in attributes.items():
            if value is not None:
                self._attributes[key] = value
        if attributes.get(ATTR_STATUS) is not None:
            self.status = attributes[ATTR_STATUS]

    def deny(self, status: int, reason: str) -> None:
        """Record a refused request: attributes and one ``kairo_guard.request.denied``."""
        self.note(**{ATTR_STATUS: status, ATTR_DECISION: "deny", ATTR_REASON: reason})

    def end(self) -> None:
        """Detach the context, decorate the span, end it if ours, count the request."""
        context.detach(self._token)
        attributes = self._attributes
        decision = attributes.get(ATTR_DECISION)
        if decision is None:
            decision = "allow" if self.status is not None and self.status < 400 else "deny"
            attributes[ATTR_DECISION] = decision
        span = self._span
        with contextlib.suppress(Exception):  # telemetry never breaks the host
            if span.is_recording():
                # the body size goes to the bytes metric only: each attribute costs ~2 us
                span.set_attributes({k: v for k, v in attributes.items() if k != ATTR_BYTES})
                if ATTR_REASON in attributes:
                    event = {ATTR_STATUS: self.status or 0, ATTR_REASON: attributes[ATTR_REASON]}
                    span.add_event(DENIED_EVENT, event)
            if self._ours:
                span.end()
        status = self.status or 0
        self._telemetry.add(METRIC_REQUESTS, 1, {ATTR_DECISION: decision, ATTR_STATUS: status})
        size = attributes.get(ATTR_BYTES)
        if size:
            self._telemetry.add(METRIC_BYTES, size, {ATTR_SOURCE: "request"})


def note_request(
    scope: MutableMapping[str, Any],
    *,
    tenant: str | None = None,
    status: int | None = None,
    sink: str | None = None,
    size: int | None = None,
) -> None:
    """Record the request's decision on its span (a no-op outside the middleware)."""
    request = scope.get(SCOPE_TRACE_KEY)
    if isinstance(request, RequestTrace):
        request.note(
            **{ATTR_TENANT: tenant, ATTR_STATUS: status, ATTR_SINK: sink, ATTR_BYTES: size}
        )


def deny_request(scope: MutableMapping[str, Any], status: int, reason: str) -> None:
    """Record that the middleware refused the request (a no-op outside it)."""
    request = scope.get(SCOPE_TRACE_KEY)
    if isinstance(request, RequestTrace):
        request.deny(status, reason)
