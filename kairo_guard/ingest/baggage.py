"""Who a caller is, from a signed tenant token in W3C baggage (the inbound side of
:mod:`kairo_guard.otel.baggage`).

:class:`BaggageResolver` is part of the middleware's default resolver: it accepts a
``kairo.tenant`` token only from a peer in ``[propagation] trusted_peers``, only if it
opens under a key of the ring, names the trace of the request's ``traceparent`` and has
not expired. Anything else is ignored, counted, audited (``baggage.rejected``) and, by
the middleware, stripped before the app runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from kairo_guard.core.exceptions import TokenRejected
from kairo_guard.core.types import TenantId
from kairo_guard.ingest.resolvers import RequestInfo, TrustedProxyResolver
from kairo_guard.otel.baggage import TenantTokenCodec, token_codec
from kairo_guard.otel.headers import inbound_trace_id, kairo_tokens
from kairo_guard.otel.instrumentation import GuardTelemetry
from kairo_guard.otel.names import ATTR_BAGGAGE, ATTR_REASON, METRIC_BAGGAGE

if TYPE_CHECKING:
    from kairo_guard.guard import Guard


class BaggageResolver:
    """Resolves the tenant from a signed ``kairo.tenant`` baggage entry.

    Args:
        codec: opens the tokens.
        trusted_peers: addresses or networks of the services allowed to send tokens.
        audit: called with an audit entry for every token ignored.
        telemetry: counts ignored tokens (``kairo_guard.baggage.rejected``).
    """

    def __init__(
        self,
        codec: TenantTokenCodec,
        trusted_peers: Iterable[str],
        *,
        audit: Callable[[dict[str, Any]], None] | None = None,
        telemetry: GuardTelemetry | None = None,
    ) -> None:
        self._codec = codec
        self._peers = TrustedProxyResolver(trusted_peers)
        self._audit = audit
        self._telemetry = telemetry

    async def resolve(self, request: RequestInfo) -> TenantId | None:
        """See :class:`~kairo_guard.ingest.resolvers.TenantResolver`; a bad token is ignored."""
        tokens = kairo_tokens(request.headers)
        if not tokens:
            return None
        trusted = self._peers.trusts(request.peer)
        try:
            if not trusted:
                raise TokenRejected("untrusted-peer")
            if len(tokens) != 1:
                raise TokenRejected("duplicate")
            trace_id = inbound_trace_id(request.headers)
            if trace_id is None:
                raise TokenRejected("no-trace")
            tenant = self._codec.open(tokens[0], trace_id)
        except TokenRejected as exc:
            self._reject(exc.reason, trusted)
            return None
        _note(ATTR_BAGGAGE, "accepted")
        return tenant

    def _reject(self, reason: str, trusted: bool) -> None:
        _note(ATTR_BAGGAGE, reason)
        if self._telemetry is not None:
            self._telemetry.add(METRIC_BAGGAGE, 1, {ATTR_REASON: reason})
        if self._audit is not None:
            self._audit({"event": "baggage.rejected", "reason": reason, "trusted_peer": trusted})


def _note(key: str, value: str) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(key, value)


def baggage_resolver(guard: Guard) -> BaggageResolver:
    """The resolver the middleware uses, from ``[propagation] trusted_peers``."""
    return BaggageResolver(
        token_codec(guard),
        guard.settings.propagation.trusted_peers,
        audit=guard.audit.append,
        telemetry=guard.telemetry,
    )
