"""The middleware's common request, admitted with the least work on the event loop.

Most requests to an ingestion service are alike: one ``Bearer`` API key verified in the
last second, a declared body small enough to read ahead, a route that feeds no sink and
serves no model, no tracing context to continue. :meth:`FastPath.admit` recognizes them
in one pass over the headers, with the route's verdict cached per path; the middleware
then serves them without the general path's per-request objects
(:meth:`~kairo_guard.ingest.middleware.GuardMiddleware`). Anything else (another
credential, signed baggage, a ``traceparent``, a recording tracer, a guarded, public or
unsure route, a body of unknown, zero or large size, a spool over its limit) goes the
general way, which decides the same requests the same way, only with more work.

Where the native extension ``kairo_guard.ingest._gate`` was built, :meth:`FastPath.admit`
is its ``Gate.admit``: the same checks in one C call (the header scan, the route cache,
the API key cache through :attr:`ApiKeyVerifier.native_keys
<kairo_guard.ingest.apikeys.ApiKeyVerifier.native_keys>`), calling back into Python for
what only Python knows (the trace context, the tracer, the spool's backlog, a route not
seen before, a key's refresh). The tests hold both to the same answers.
"""

from __future__ import annotations

import contextvars
import functools
import operator
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from opentelemetry import context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

from kairo_guard.core.types import TenantId
from kairo_guard.ingest.apikeys import ApiKeyVerifier
from kairo_guard.ingest.routing import NO_ROUTE, RouteTable
from kairo_guard.ingest.spooling import IngestSpool
from kairo_guard.otel.instrumentation import GuardTelemetry

try:  # compiled at install time (hatch_build.py)
    import kairo_guard.ingest._gate as native_gate
except ImportError:  # not built: FastPath.admit runs in Python
    native_gate = None  # type: ignore[assignment]

Scope = MutableMapping[str, Any]
ROUTE_CACHE_SIZE = 4096
"""Paths whose route verdict is remembered (the cache is emptied when full)."""
TRACE_HEADERS = frozenset({b"traceparent", b"baggage"})
"""Headers that need the general path's tracing work."""
BUSY_RECHECK = 0.01
"""Seconds the native gate trusts its last answer to "are spans recorded, is the spool
over its limit" (a tracer provider set, or a spool that fills, is seen within this)."""


class FastPath:
    """Admits the common request (see the module docstring).

    Args:
        verifier: the API key verifier (its cache of recently verified keys).
        routes: the middleware's route table.
        spool: the ingestion spool (its backlog limit).
        telemetry: the guard's telemetry (is a tracer recording).
        credential_headers: headers naming a caller other than by API key (lower case).
        max_size: the largest declared body admitted.
    """

    __slots__ = ("_max", "_other", "_plain", "_routes", "_slow", "_spool", "_telemetry",
                 "_verifier", "admit")  # fmt: skip

    def __init__(
        self,
        verifier: ApiKeyVerifier,
        routes: RouteTable,
        spool: IngestSpool,
        telemetry: GuardTelemetry,
        credential_headers: Iterable[bytes],
        max_size: int,
    ) -> None:
        self._verifier = verifier
        self._routes = routes
        self._spool = spool
        self._telemetry = telemetry
        self._other = frozenset(credential_headers)
        self._slow = self._other | TRACE_HEADERS
        self._max = max_size
        self._plain: dict[tuple[Any, Any, Any], bool] = {}
        self.admit: Callable[[Scope], tuple[TenantId, int] | None] = self.admit_python
        """``(tenant, declared body size)`` for an http request the fast path may serve,
        else None: the native gate where it was built, else :meth:`admit_python`."""
        keys = verifier.native_keys
        if native_gate is not None and keys is not None:
            gate = native_gate.Gate(
                keys=keys,
                refused=tuple(sorted(self._slow)),
                max_size=max_size,
                plain=self._plain,
                route_plain=self._route_plain,
                context=_current_context_var() or context.get_current,
                tracer=telemetry.active_tracer,
                overloaded=functools.partial(operator.attrgetter("overloaded"), spool),
                route_cache_size=ROUTE_CACHE_SIZE,
                recheck=BUSY_RECHECK,
            )
            self.admit = gate.admit

    def known_bearer(self, scope: Scope) -> TenantId | None:
        """The tenant of a request whose only credential is one ``Bearer`` API key
        verified within the last second (no store read, no thread), or None: then every
        resolver decides."""
        found = _scan(scope, self._other)
        if found is None or found[0] is None or found[0][:7] != b"Bearer ":
            return None
        return self._verifier.cached(found[0][7:].strip().decode("latin-1"))

    def admit_python(self, scope: Scope) -> tuple[TenantId, int] | None:
        """:attr:`admit` in Python (the native gate makes the same decisions)."""
        found = _scan(scope, self._slow)
        if found is None:
            return None
        auth, length = found
        if (
            auth is None
            or length is None
            or auth[:7] != b"Bearer "
            or not length.isdigit()
            or len(length) > 18  # as the native gate: a value past it is not parsed
        ):
            return None
        size = int(length)
        if not 0 < size <= self._max or context.get_current():
            return None
        if self._telemetry.active_tracer() is not None or self._spool.overloaded:
            return None
        key = (scope.get("path"), scope.get("root_path"), scope.get("raw_path"))
        plain = self._plain.get(key)
        if plain is None:
            plain = self._route_plain(scope)
            if len(self._plain) >= ROUTE_CACHE_SIZE:
                self._plain.clear()
            self._plain[key] = plain
        if not plain:
            return None
        tenant = self._verifier.cached(auth[7:].strip().decode("latin-1"))
        return None if tenant is None else (tenant, size)

    def _route_plain(self, scope: Scope) -> bool:
        """True for a route that feeds no sink, serves no model, is not public and is
        not ambiguous (then the fast path may serve it)."""
        path = self._routes.route_path(scope)
        routes = self._routes
        return path not in routes.public_paths and routes.match(scope, path) == NO_ROUTE


def _current_context_var() -> contextvars.ContextVar[Any] | None:
    """The ContextVar behind ``opentelemetry.context.get_current`` when the API runs on
    its default runtime context (the gate then reads it without calling Python), else
    None."""
    runtime = getattr(context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, contextvars.ContextVar) else None


def _scan(scope: Scope, refused: frozenset[bytes]) -> tuple[bytes | None, bytes | None] | None:
    """The one ``authorization`` and one ``content-length`` header of a request (None
    where absent), or None if either is repeated or a header in ``refused`` is there."""
    auth = length = None
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            if auth is not None:
                return None
            auth = value
        elif name == b"content-length":
            if length is not None:
                return None
            length = value
        elif name in refused:
            return None
    return auth, length
