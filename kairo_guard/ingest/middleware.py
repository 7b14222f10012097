"""``GuardMiddleware``: pure ASGI tenant tagging at the door of ingestion services.

For every http or websocket request to a guarded path it: resolves the tenant through
a :class:`~kairo_guard.ingest.resolvers.TenantResolver` (401 without valid credentials, never
a default tenant); refuses tenant requests to routes declared as shared sinks (403);
sets the tenant context for the handler; counts, digests and caps the request body as
it streams (413 past the cap, counted on bytes received, not Content-Length; 415 for a
body sent with a ``Content-Encoding``, whose text the net could not read); seals the
body as the tenant's customer content once it is complete and makes it durable in the
ingestion spool before the app sees its end (:mod:`kairo_guard.ingest.spooling`: group
commit; 503 with ``Retry-After`` when the spool cannot take it or its backlog is over
``limits.spool_max_bytes``), puts the seal in ``scope["kairo_guard"]`` and in a
``kairo-provenance`` response header; and audits the request. The spool's indexer
fingerprints the body off the request path; a check at a shared sink waits for it.
Other scopes pass through; at lifespan shutdown the spool is closed before the server
hears (queued bodies durable, what was accepted indexed).

Routes are matched on the path the application routes on, as its router computes it
(uvicorn ``--root-path``, ``Mount``s, an app's own ``root_path``; sink and model routes
also as full paths), and a path the middleware cannot be sure of that reaches a guarded
route is refused: 403, rule ``route.ambiguous`` (:mod:`kairo_guard.ingest.routing`).

The decision also goes onto the request's server span, or one span of ours
(:mod:`kairo_guard.otel.request_span`); signed tenant baggage counts only from trusted peers
(:mod:`kairo_guard.ingest.baggage`) and is removed before the app runs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from kairo_guard.core.context import serving_tenant
from kairo_guard.core.exceptions import AuthenticationError
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import TenantId
from kairo_guard.enforce.ledger import audit_sink_name
from kairo_guard.guard import Guard
from kairo_guard.ingest.answers import deny
from kairo_guard.ingest.apikeys import ApiKeyVerifier
from kairo_guard.ingest.baggage import baggage_resolver
from kairo_guard.ingest.door import GENERAL, REFUSED, DoorHost, build_door, serve_admitted
from kairo_guard.ingest.door import SCOPE_KEY as SCOPE_KEY  # re-exported
from kairo_guard.ingest.fast_path import FastPath
from kairo_guard.ingest.provenance import RequestProvenance
from kairo_guard.ingest.request_state import (
    BODY_ENCODED,
    BODY_ERRORS,
    BodyNotRecorded,
    BodyTooLarge,
    Message,
    Receive,
    RequestState,
    Send,
    closing_at_shutdown,
    content_encoding,
    content_length,
    replay,
)
from kairo_guard.ingest.request_state import PROVENANCE_HEADER as PROVENANCE_HEADER  # re-exported
from kairo_guard.ingest.resolvers import (
    ApiKeyResolver,
    CompositeResolver,
    RequestInfo,
    TenantResolver,
    TrustedProxyResolver,
)
from kairo_guard.ingest.routing import ROUTE_AMBIGUOUS, RouteTable, app_root_path
from kairo_guard.ingest.spooling import IngestSpool
from kairo_guard.otel.headers import strip_kairo_baggage, without_kairo_baggage
from kairo_guard.otel.request_span import RequestTrace, note_request
from kairo_guard.tenancy.models import model_ref

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

READ_AHEAD_BYTES = 1 << 20
"""Bodies declared this small are read and spooled before the app runs; larger ones
and bodies of unknown length as the app reads them."""
SPOOL_FULL = "spool.full"
"""The rule of a 503 while the spool's backlog is over its limit."""
logger = logging.getLogger("kairo_guard.ingest.middleware")


class GuardMiddleware:
    """Pure ASGI middleware that tags customer content with tenant provenance.

    Args:
        app: the ASGI application to guard.
        guard: the configured :class:`Guard`.
        resolver: who the caller is (default: API keys, plus the trusted-proxy header
            when ``trusted_proxies`` are configured).
        max_body_bytes: request body cap (default: ``limits.max_body_bytes``).
        sink_routes: path -> sink name or :class:`Sink` for routes that feed a sink
            (default: the ``routes`` of configured sinks); a path matches itself and
            everything below it, matched on the route path (see the module docstring).
        public_paths: paths served without authentication (health checks); exact match
            on the route path.
        source: the ``source`` written into seals.
        model_routes: inference route templates holding ``{model_id}``, e.g.
            ``/v1/models/{model_id}/infer``: the caller must be allowed the model
            (:meth:`Guard.check_model_access`) or gets 403 before the app runs.
            ``{model_id}`` spans one or more segments; the rest matches as written.
        request_span: make a ``kairo_guard.request`` span when no host span is
            recording (default). False: decisions then go only to the host's span when
            there is one, the metrics and the audit log (a span costs what the SDK
            charges for one; see README).
        indexer: where the spool's indexer runs: ``process`` (default), ``thread`` or
            ``none`` (see :mod:`kairo_guard.ingest.spooling`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: Guard,
        resolver: TenantResolver | None = None,
        max_body_bytes: int | None = None,
        sink_routes: Mapping[str, Sink | str] | None = None,
        public_paths: Iterable[str] = (),
        source: str = "http",
        model_routes: Iterable[str] = (),
        request_span: bool = True,
        indexer: str | None = None,
    ) -> None:
        self.app = app
        self.request_span = request_span
        self.guard = guard
        # the default resolvers' common case (one Bearer key, verified in the last
        # second, no other credential header) is decided without them
        self._verifier = ApiKeyVerifier(guard.store) if resolver is None else None
        self.resolver = resolver or _default_resolver(guard, self._verifier)
        self._other_credentials = frozenset(
            {b"x-api-key", b"baggage", guard.settings.tenant_header.lower().encode("latin-1")}
        )
        self.max_body_bytes = max_body_bytes or guard.settings.limits.max_body_bytes
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        routes = guard.settings.sink_routes if sink_routes is None else sink_routes
        self.routes = RouteTable(
            {p: guard.resolve_sink(s) if isinstance(s, str) else s for p, s in routes.items()},
            model_routes,
            public_paths,
            app_root=app_root_path(app),
        )
        self.source = source
        self.spool = IngestSpool(guard, indexer=indexer)
        # known to the replicas sharing the store before it accepts anything: their
        # checks wait for what this one accepts (kairo_guard.detect.coverage)
        guard.store.publish_coverage(guard.settings.audit_log_id, None)
        self._fast = (
            None
            if self._verifier is None
            else FastPath(
                self._verifier,
                self.routes,
                self.spool,
                guard.telemetry,
                self._other_credentials | {b"content-encoding"},  # (the general way: 415)
                min(self.max_body_bytes, READ_AHEAD_BYTES),
            )
        )
        self._admit = self._fast.admit if self._fast else lambda scope: None  # (general way)
        self._door = self.make_door()
        self._host = DoorHost(
            self, guard, self.spool, source, self._general, self._refuse, self._denied
        )

    def make_door(self) -> Any | None:
        """The native door for this middleware's admitted requests, None where it is
        not built (:mod:`kairo_guard.ingest.door`); made at start, again after the spool's
        writer is replaced in a test or benchmark."""
        return build_door(self, self.guard, self.spool, source=self.source, denied=self._denied)

    def _denied(
        self, scope: Scope, tenant: str, status: int | None, provenance: RequestProvenance | None
    ) -> None:
        self._audit(tenant, scope, status=status, provenance=provenance)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        admitted = self._admit(scope) if kind == "http" else None
        if admitted is None:
            if kind == "http" or kind == "websocket":
                await self._general(scope, receive, send)
            else:  # lifespan: the spool is closed at shutdown
                await self.app(scope, receive, closing_at_shutdown(scope, send, self.spool.close))
            return
        # A request FastPath admitted: its one body message spooled, then the app run
        # with the seal in the response; a body the spool cannot take is answered 503.
        # Anything else unexpected (a body in several messages or not of its declared
        # size, a client gone) goes the general way, from the message read on.
        tenant, size = admitted
        if self._door is None:  # the same steps in Python (kairo_guard.ingest.door)
            await serve_admitted(self._host, scope, receive, send, tenant, size)
            return
        admission = self._door.serve(scope, receive, send, tenant, size)
        outcome = await admission
        if outcome == GENERAL:
            await self._general(scope, replay(admission.message, receive), send)
        elif outcome == REFUSED:
            await self._refuse(scope, receive, send, tenant, size)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, tenant: TenantId, size: int
    ) -> None:
        self._audit(tenant, scope, status=503)
        self.guard.telemetry.count_request("deny", 503, size)
        await deny(scope, receive, send, 503, BODY_ERRORS[503])

    async def _general(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = self.routes.route_path(scope)
        if path in self.routes.public_paths:
            with without_kairo_baggage(scope):  # not authenticated: no tenant, no token
                await self.app(scope, receive, send)
            return
        traced = RequestTrace(self.guard.telemetry, scope, own_span=self.request_span)
        try:
            await self._guarded(scope, receive, send, path)
        finally:
            traced.end()

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        tenant = self._fast.known_bearer(scope) if self._fast is not None else None
        fast = tenant is not None
        if tenant is None:
            tenant = await self._resolve(scope, receive, send)
            if tenant is None:  # answered 401 or 503
                return
        route = self.routes.match(scope, path)
        if route.ambiguous:
            self._audit(tenant, scope, status=403, rule=ROUTE_AMBIGUOUS)
            detail = "cannot be sure which route serves this path: use its canonical form"
            await deny(scope, receive, send, 403, detail, rule=ROUTE_AMBIGUOUS)
            return
        sink = route.sink
        if sink is not None and not self._may_feed(tenant, sink):
            name = audit_sink_name(sink, self.guard.keys.pseudonym)
            self._audit(tenant, scope, status=403, sink=name)
            await deny(scope, receive, send, 403, f"route feeds sink {sink.name!r} ({sink.label})")
            return
        model = route.model
        if model is not None and not self._may_call(tenant, model):
            self._audit(tenant, scope, status=403, model=model_ref(model))
            await deny(scope, receive, send, 403, "this model is not served to this account")
            return
        if not fast:  # (the fast path saw no baggage) only a verified token counts, here
            strip_kairo_baggage(scope)
        if scope["type"] == "http" and (coding := content_encoding(scope.get("headers") or ())):
            self._audit(tenant, scope, status=415, rule=BODY_ENCODED)
            detail = f"bodies sent with Content-Encoding {coding!r} are refused: send them as is"
            await deny(scope, receive, send, 415, detail, rule=BODY_ENCODED)
            return
        with serving_tenant(tenant):
            if scope["type"] == "websocket":
                if self.spool.overloaded:  # as for http: shed load while the index lags
                    self._audit(tenant, scope, status=503, rule=SPOOL_FULL)
                    detail = "ingestion is behind: the spool is full, retry later"
                    await deny(scope, receive, send, 503, detail, rule=SPOOL_FULL)
                    return
                scope[SCOPE_KEY] = RequestProvenance(self.guard, tenant, self.source)
                await self.app(scope, self._indexing_receive(receive, tenant), send)
            else:
                await self._http(scope, receive, send, tenant)

    async def _resolve(self, scope: Scope, receive: Receive, send: Send) -> TenantId | None:
        """Every resolver's say on the caller; None once the request is answered."""
        request = RequestInfo(
            peer=(scope.get("client") or (None,))[0],
            path=scope.get("path", ""),
            headers=scope.get("headers", ()),
        )
        try:
            tenant = await self.resolver.resolve(request)
        except AuthenticationError as exc:
            await deny(scope, receive, send, 401, str(exc))
            return None
        except Exception as exc:
            logger.exception("tenant resolution failed")
            await deny(scope, receive, send, 503, f"cannot verify tenant ({type(exc).__name__})")
            return None
        if tenant is None:
            await deny(scope, receive, send, 401, "missing credentials")
        return tenant

    def _indexing_receive(self, receive: Receive, tenant: TenantId) -> Receive:
        """Spool every websocket message as the tenant's content, durably, before the
        app sees it (a message that cannot be recorded is an error the app sees, never
        a pass); the spool's indexer fingerprints it."""

        async def guarded_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                data = message.get("text") or message.get("bytes") or b""
                if data:
                    body = data.encode() if isinstance(data, str) else data
                    await self.spool.record(tenant, [body], "")
            return message

        return guarded_receive

    def _may_call(self, tenant: TenantId, model: str) -> bool:
        try:
            return self.guard.check_model_access(model, tenant)
        except Exception:  # fail closed: an error in the guard denies
            logger.exception("model access check failed")
            return False

    def _may_feed(self, tenant: TenantId, sink: Sink) -> bool:
        if sink.kind.shared or sink.tenant != tenant:
            return False
        return self.guard.tenancy.agreements.active(tenant)

    async def _http(self, scope: Scope, receive: Receive, send: Send, tenant: TenantId) -> None:
        declared = content_length(scope.get("headers", ()))
        if declared is not None and (declared < 0 or declared > self.max_body_bytes):
            status = 400 if declared < 0 else 413
            self._audit(tenant, scope, status=status)
            await deny(scope, receive, send, status, BODY_ERRORS[status])
            return
        if self.spool.overloaded:  # the indexer is too far behind: shed load, say when
            self._audit(tenant, scope, status=503, rule=SPOOL_FULL)
            detail = "ingestion is behind: the spool is full, retry later"
            await deny(scope, receive, send, 503, detail, rule=SPOOL_FULL)
            return
        provenance = RequestProvenance(self.guard, tenant, self.source)
        state = RequestState(
            provenance,
            self.spool,
            self.source,
            self.max_body_bytes,
            send,
            f"{scope.get('method', '')} {scope.get('path', '')}".encode("utf-8", "replace"),
        )
        scope[SCOPE_KEY] = provenance
        try:
            if declared is not None and declared <= READ_AHEAD_BYTES:
                app_receive = await state.read_ahead(receive)
                if app_receive is None:  # the client left, or the body was refused
                    return
            else:
                app_receive = state.wrap_receive(receive)
            await self.app(scope, app_receive, state.guarded_send)
        except (BodyTooLarge, BodyNotRecorded):
            pass  # the 413 or 503 went out at once; the app saw the error
        finally:
            final = state.status
            # an accepted body's request is audited by the spool's indexer, with the
            # body's seal entry (method, path hash, digest); the rest here
            spooled = provenance.seal is not None and final is not None and final < 400
            self._audit(tenant, scope, status=final, provenance=provenance, write=not spooled)

    def _audit(
        self,
        tenant: TenantId,
        scope: Scope,
        *,
        status: int | None,
        sink: str | None = None,
        provenance: RequestProvenance | None = None,
        model: str | None = None,
        rule: str | None = None,
        write: bool = True,
    ) -> None:
        if not write:
            size = provenance.size if provenance is not None and provenance.size else None
            pseudonym = self.guard.keys.pseudonym(tenant)
            note_request(scope, tenant=pseudonym, status=status, sink=sink, size=size)
            return
        entry: dict[str, Any] = {
            "event": "request",
            "tenant": self.guard.keys.pseudonym(tenant),
            "method": scope.get("method", "WEBSOCKET"),
            "path_sha256": hashlib.sha256(scope.get("path", "").encode()).hexdigest()[:32],
            "status": status,
        }
        if sink is not None:
            entry["sink"] = sink
        if model is not None:
            entry["model"] = model
        if rule is not None:
            entry["rule"] = rule
        if provenance is not None and provenance.size:
            entry.update(bytes=provenance.size, digest=provenance.digest)
        self.guard.audit.append(entry)
        note_request(
            scope, tenant=entry["tenant"], status=status, sink=sink, size=entry.get("bytes")
        )


def _default_resolver(guard: Guard, verifier: ApiKeyVerifier | None) -> TenantResolver:
    # signed baggage is always looked at: from untrusted peers it is audited and ignored
    resolvers: list[TenantResolver] = [ApiKeyResolver(verifier or ApiKeyVerifier(guard.store))]
    proxies = guard.settings.trusted_proxies
    if proxies:
        resolvers.append(TrustedProxyResolver(proxies, header=guard.settings.tenant_header))
    return CompositeResolver([*resolvers, baggage_resolver(guard)])
