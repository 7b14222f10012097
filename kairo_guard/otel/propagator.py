"""The tenant token as an OpenTelemetry propagator, for auto-instrumented HTTP clients.

An instrumented client (``opentelemetry-instrumentation-httpx``, ``-requests``,
``-aiohttp-client``, ...) injects the global propagator's headers when it sends, after
any event hook ran: the W3C baggage propagator then rewrites the ``baggage`` header from
the context's entries, and a token an event hook put there is gone whenever the context
holds baggage of its own. :class:`TenantBaggagePropagator`, placed after the W3C
baggage propagator in the global composite, adds the current tenant's fresh token to
whatever ``baggage`` header is there by then::

    from opentelemetry.propagate import set_global_textmap
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    set_global_textmap(CompositePropagator([
        TraceContextTextMapPropagator(), W3CBaggagePropagator(),
        TenantBaggagePropagator(guard),
    ]))

The token is bound to the trace of the span being injected (the client's span). It
extracts nothing: inbound tokens are judged by the middleware alone, from trusted peers.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_setter,
)

from kairo_guard.core.context import current_tenant
from kairo_guard.otel.baggage import baggage_members, token_codec
from kairo_guard.otel.protocols import TokenAuthority

_HEADER = "baggage"


class TenantBaggagePropagator(TextMapPropagator):
    """Injects the current tenant's signed token into the ``baggage`` header.

    Args:
        guard: whose key ring signs the tokens (and whose ``token_ttl`` they get): a
            :class:`~kairo_guard.guard.Guard` or any
            :class:`~kairo_guard.otel.protocols.TokenAuthority`.

    A kairo entry already in the header (an event hook's, a stale one, one the W3C
    propagator wrote from context baggage) is replaced by one fresh token, or removed
    outside a tenant's context or without a valid span in the context. Headers that
    differ only in case are merged into one; other entries that would push the header
    past 8,192 bytes are left out (the token is kept). The carrier must be a mutable
    mapping (as every instrumented client's headers are); another carrier is left as
    it is.
    """

    def __init__(self, guard: TokenAuthority) -> None:
        self._codec = token_codec(guard)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        """Replace any kairo entry of ``carrier``'s ``baggage`` header by the current
        tenant's fresh token (by nothing outside a tenant's context or a valid span);
        never raises."""
        if not isinstance(carrier, MutableMapping):
            return
        try:
            names, existing = _headers(carrier)
            tenant = current_tenant()
            span_context = trace.get_current_span(context).get_span_context()
            token = None
            if tenant is not None and span_context.is_valid:
                token = self._codec.issue(tenant, span_context.trace_id)
            members = baggage_members(existing, token)
            for name in names:
                del carrier[name]
            if members:
                setter.set(carrier, _HEADER, ",".join(members))
        except Exception:  # noqa: BLE001, S110 - no token then: the downstream refuses
            pass

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] | None = None,
    ) -> Context:
        """Nothing: the middleware alone accepts tokens, and only from trusted peers."""
        return context if context is not None else Context()

    @property
    def fields(self) -> set[str]:
        """The header this propagator sets."""
        return {_HEADER}


def _headers(carrier: Mapping[Any, Any]) -> tuple[list[Any], str]:
    """The names the carrier files ``baggage`` under (any case) and their values
    joined (bytes read as Latin-1, lists joined)."""
    names, values = [], []
    for key, item in list(carrier.items()):
        text = bytes(key).decode("latin-1") if isinstance(key, bytes | bytearray) else str(key)
        if text.lower() != _HEADER:
            continue
        names.append(key)
        for value in item if isinstance(item, list | tuple) else (item,):
            if isinstance(value, bytes | bytearray):
                value = bytes(value).decode("latin-1")
            if value:
                values.append(str(value))
    return names, ",".join(values)
