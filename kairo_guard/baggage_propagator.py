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

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_setter,
)

from kairo_guard.baggage import token_codec
from kairo_guard.context import current_tenant
from kairo_guard.propagation import BAGGAGE_KEY, split_baggage

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

_HEADER = "baggage"


class TenantBaggagePropagator(TextMapPropagator):
    """Injects the current tenant's signed token into the ``baggage`` header.

    Args:
        guard: whose key ring signs the tokens (and whose ``token_ttl`` they get).

    A kairo entry already in the header (an event hook's, or a stale one) is replaced
    by one fresh token. Nothing is added outside a tenant's context or without a valid
    span in the context. The carrier must be a mapping (as every instrumented client's
    headers are); another carrier gets nothing.
    """

    def __init__(self, guard: Guard) -> None:
        self._codec = token_codec(guard)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        """Add the token to ``carrier``'s ``baggage`` header; never raises."""
        tenant = current_tenant()
        span_context = trace.get_current_span(context).get_span_context()
        if tenant is None or not span_context.is_valid or not isinstance(carrier, Mapping):
            return
        try:
            name, existing = _header(carrier)
            members = [m for k, m in split_baggage(existing) if k != BAGGAGE_KEY]
            members.append(f"{BAGGAGE_KEY}={self._codec.issue(tenant, span_context.trace_id)}")
            setter.set(carrier, name, ",".join(members))
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


def _header(carrier: Mapping[str, Any]) -> tuple[str, str]:
    """The name the carrier files ``baggage`` under (any case) and its value (several
    values joined)."""
    name, value = _HEADER, carrier.get(_HEADER)
    if value is None:
        for key, item in carrier.items():
            if isinstance(key, str) and key.lower() == _HEADER:
                name, value = key, item
                break
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    return name, str(value) if value else ""
