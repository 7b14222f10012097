"""The middleware's side of tracing: the request's span.

Decisions of a request go onto the server span of the host (set by an ASGI
instrumentation) when one is recording; otherwise the middleware makes one span of its
own per request (``kairo_guard.request``: SERVER, with ``http.request.method``, when it
is the service's entry span; INTERNAL under a span of this process), under the current
span or else the caller's ``traceparent``, and makes it current so that the checks and
outbound calls of the handler join the trace. Never a span per body chunk. Without an
SDK (or with a no-op tracer provider) no span is made or decorated; the caller's
``traceparent`` is still made current, for outbound calls and tokens.

Kairo baggage is removed from the request before the app runs, from the ``baggage``
header (:mod:`kairo_guard.otel.headers`) and from the OpenTelemetry context alike: the
app and its own outbound calls never see or forward a token; only a verified token
sets the tenant (see :mod:`kairo_guard.otel.baggage`), and the outbound hook mints a
fresh one.
"""

from __future__ import annotations

import contextlib
from collections.abc import MutableMapping
from typing import Any

from opentelemetry import baggage, context, trace

from kairo_guard.otel.headers import BAGGAGE_KEY, inbound_span_context
from kairo_guard.otel.instrumentation import GuardTelemetry
from kairo_guard.otel.names import (
    ATTR_BYTES,
    ATTR_DECISION,
    ATTR_REASON,
    ATTR_SINK,
    ATTR_STATUS,
    ATTR_TENANT,
    REQUEST_SPAN,
)

SCOPE_TRACE_KEY = "kairo_guard.trace"
"""Scope key of the request's :class:`RequestTrace`."""
DENIED_EVENT = "kairo_guard.request.denied"
HTTP_STATUS = "http.response.status_code"
"""The response status, on the guard's own request span (semantic conventions)."""
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
"""Methods named as they are on a span; any other is ``_OTHER`` (semantic conventions)."""


class RequestTrace:
    """The tracing state of one request: whose span, what was decided.

    Made by the middleware before anything else; what it costs per request:

    * no SDK (or a no-op tracer provider): no span; the inbound ``traceparent`` is
      made current (when the context has no valid span yet) so that outbound calls
      and tokens stay in the caller's trace.
    * a host's recording server span: nothing at the start; at the end, the decision
      attributes in one call.
    * otherwise: one span of ours, a child of the current span if the context has a
      valid one, else of the inbound ``traceparent`` (parsed once), made current.

    Kairo baggage in the OpenTelemetry context is removed in every case.
    """

    __slots__ = ("_extra", "_ours", "_span", "_telemetry", "_token", "reason", "sink",
                 "size", "status", "tenant")  # fmt: skip

    def __init__(
        self, telemetry: GuardTelemetry, scope: MutableMapping[str, Any], *, own_span: bool = True
    ) -> None:
        """Find or start the request's span (``own_span=False``: only a host's), make
        it current, drop inbound kairo baggage from the context, register in ``scope``."""
        self._telemetry = telemetry
        self.status: int | None = None
        self.tenant: str | None = None
        self.sink: str | None = None
        self.size: int | None = None
        self.reason: str | None = None
        self._extra: dict[str, Any] | None = None
        self._span: trace.Span | None = None
        self._ours = False
        self._token: Any = None
        scope[SCOPE_TRACE_KEY] = self
        current = context.get_current()
        ctx = self._enter(telemetry, current, scope, own_span)
        if current and baggage.get_baggage(BAGGAGE_KEY, current) is not None:
            ctx = baggage.remove_baggage(BAGGAGE_KEY, ctx)
        if ctx is not current:
            self._token = context.attach(ctx)

    def _enter(
        self,
        telemetry: GuardTelemetry,
        ctx: context.Context,
        scope: MutableMapping[str, Any],
        own_span: bool,
    ) -> context.Context:
        """The context the app runs in: with our span if we make one, with the inbound
        ``traceparent`` if the context had no valid span; else ``ctx`` itself."""
        try:
            tracer = telemetry.active_tracer()
            span = trace.get_current_span(ctx)
            if tracer is not None and span.is_recording():
                self._span = span  # the host's server span: decorated at the end
                return ctx
            parent = span.get_span_context()
            if not parent.is_valid:
                remote = inbound_span_context(scope.get("headers") or ())
                if remote is not None:
                    ctx = trace.set_span_in_context(trace.NonRecordingSpan(remote), ctx)
            if tracer is None or not own_span:
                return ctx
            if parent.is_valid and not parent.is_remote:  # under a span of this process
                ours = tracer.start_span(REQUEST_SPAN, context=ctx)
            else:  # the service's entry span: SERVER, so service graphs draw the edge
                method = scope.get("method")
                attributes = {"http.request.method": method if method in _METHODS else "_OTHER"}
                ours = tracer.start_span(
                    REQUEST_SPAN, context=ctx, kind=trace.SpanKind.SERVER, attributes=attributes
                )
        except Exception:  # noqa: BLE001 - telemetry never breaks the host
            return ctx
        self._span, self._ours = ours, True
        return trace.set_span_in_context(ours, ctx)

    def note(self, **attributes: Any) -> None:
        """Record decision attributes (``kairo_guard.*`` names) for the request's span;
        they are set on it once, at the end."""
        for key, value in attributes.items():
            if value is None:
                continue
            if key == ATTR_STATUS:
                self.status = value
            elif key == ATTR_TENANT:
                self.tenant = value
            elif key == ATTR_SINK:
                self.sink = value
            elif key == ATTR_REASON:
                self.reason = value
            elif key == ATTR_BYTES:
                self.size = value
            elif key != ATTR_DECISION:  # the decision follows from status and reason
                if self._extra is None:
                    self._extra = {}
                self._extra[key] = value

    def deny(self, status: int, reason: str) -> None:
        """Record a refused request: attributes and one ``kairo_guard.request.denied``."""
        self.status, self.reason = status, reason

    def end(self) -> None:
        """Detach the context, decorate the span, end it if ours, count the request."""
        if self._token is not None:
            context.detach(self._token)
        status = self.status or 0
        decision = "deny" if self.reason is not None or not 0 < status < 400 else "allow"
        span = self._span
        if span is not None:
            try:
                if span.is_recording():
                    self._decorate(span, decision, status)
                if self._ours:
                    span.end()
            except Exception:  # noqa: BLE001 - telemetry never breaks the host
                if self._ours:
                    with contextlib.suppress(Exception):
                        span.end()  # a span of ours never stays open
        self._telemetry.count_request(decision, status, self.size)

    def _decorate(self, span: trace.Span, decision: str, status: int) -> None:
        # every attribute costs the SDK a validation: only what is known, in one call;
        # the body size goes to the bytes metric only
        attributes: dict[str, Any] = {ATTR_DECISION: decision}
        if self._ours and status:  # a host's instrumentation sets it on its own span
            attributes[HTTP_STATUS] = status
        if self.tenant is not None:
            attributes[ATTR_TENANT] = self.tenant
        if self.sink is not None:
            attributes[ATTR_SINK] = self.sink
        if self._extra:
            attributes.update(self._extra)
        if self.reason is None:
            span.set_attributes(attributes)
            return
        attributes[ATTR_REASON] = self.reason
        span.set_attributes(attributes)
        span.add_event(DENIED_EVENT, {ATTR_STATUS: status, ATTR_REASON: self.reason})


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
        if tenant is not None:
            request.tenant = tenant
        if status is not None:
            request.status = status
        if sink is not None:
            request.sink = sink
        if size is not None:
            request.size = size


def deny_request(scope: MutableMapping[str, Any], status: int, reason: str) -> None:
    """Record that the middleware refused the request (a no-op outside it)."""
    request = scope.get(SCOPE_TRACE_KEY)
    if isinstance(request, RequestTrace):
        request.deny(status, reason)
