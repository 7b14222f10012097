"""The middleware's admitted request, served by the native door.

A request :class:`~kairo_guard.ingest.fast_path.FastPath` admits is, where the C
extension ``kairo_guard.ingest._door`` was built and the spool writes natively, served
by one C object instead of the middleware's Python: it reads the one body message,
hands the body to the native spool writer (:mod:`kairo_guard.ingest.spool_native`),
waits until it is durable, then puts the :class:`RequestProvenance` in the scope, sets
the tenant context and runs the app with the body replayed and the seal added to the
response's headers; at the end it resets the context, counts the request and audits a
denied status. The same steps, in the same order, as the middleware's Python fast path
(which serves where the extension is missing); the tests hold both to the same
behaviour.

While the body is being made durable the C object is itself the future its task waits
on, and the writer's completion (on the event loop's thread, from the writer's eventfd
callback or its continuation, where no task runs) resumes the task at once in the task's
own context rather than through ``loop.call_soon``. A pass's bodies are completed in
slices of :data:`~kairo_guard.ingest.spool_native.COMPLETION_SLICE_NS`, one slice a turn
of the loop, so requests that arrive meanwhile reach the writer before the pass's last
app runs. Where asyncio's table of running tasks cannot be read
(``asyncio.tasks._current_tasks``, CPython's), or anywhere else a completion happens, the
task is resumed as from any future. Every await outcome the door cannot take (a body in
several messages, a body of another size) ends in :data:`GENERAL` and the middleware's
general path; a body the writer refuses in :data:`REFUSED` (503).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kairo_guard.core.context import TENANT_VAR, end_serving, serve_tenant
from kairo_guard.core.exceptions import StoreError
from kairo_guard.core.types import TenantId
from kairo_guard.ingest import spool_native
from kairo_guard.ingest.provenance import RequestProvenance
from kairo_guard.ingest.request_state import PROVENANCE_HEADER, Message, Receive, Send, replay
from kairo_guard.ingest.spooling import IngestSpool

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

try:  # compiled at install time (hatch_build.py)
    import kairo_guard.ingest._door as native_door
except ImportError:  # not built: the middleware's Python fast path serves
    native_door = None  # type: ignore[assignment]  # (the stub says it is there)

Scope = MutableMapping[str, Any]
SCOPE_KEY = "kairo_guard"
"""The scope key holding the request's :class:`RequestProvenance`."""
SERVED, GENERAL, REFUSED = 0, 1, 2
"""How an admission ends: the app ran; the request goes the general way (the message
read is ``admission.message``); the spool refused the body (answer 503)."""


def build_door(
    owner: Any,
    guard: Guard,
    spool: IngestSpool,
    *,
    source: str,
    denied: Callable[[Any, str, int | None, RequestProvenance | None], None],
) -> Any | None:
    """The native door serving ``owner.app`` (a ``_door.Door``; the app is read per
    request), or None where it cannot: the extension is missing, the spool's writer is
    not the native one, or bodies are spooled unsealed (no ``source``).

    Args:
        denied: audits a request the app answered with a status outside 1..399 (or
            none): ``denied(scope, tenant, status, provenance)``.
    """
    if native_door is None or spool.writer_mode != "native" or not source:
        return None
    sealer = guard.sealer
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    return native_door.Door(
        {
            "app": owner,
            "parts": sealer.spooled_parts,
            "clocked": getattr(sealer, "_clock", None) is time.time,
            "provenance": RequestProvenance,
            "guard": guard,
            "source": source,
            "tenant_var": TENANT_VAR,
            "header": PROVENANCE_HEADER,
            "count": guard.telemetry.count_request,
            "requests": guard.telemetry.request_queue(),
            "denied": denied,
            "writer": spool.native_writer,
            "max_queued": spool_native.MAX_QUEUED,
            "store_error": StoreError,
            "scope_key": SCOPE_KEY,
            "current_tasks": tasks if type(tasks) is dict else None,
        }
    )


@dataclass(frozen=True)
class DoorHost:
    """What the Python steps need of the middleware (its app read at each request)."""

    owner: Any
    """The middleware: its ``app`` is what runs."""
    guard: Guard
    spool: IngestSpool
    source: str
    general: Callable[[Scope, Receive, Send], Awaitable[None]]
    """Serves a request the general way."""
    refuse: Callable[[Scope, Receive, Send, TenantId, int], Awaitable[None]]
    """Answers 503 for a body the spool refused (audited and counted)."""
    denied: Callable[[Scope, str, int | None, RequestProvenance | None], None]
    """Audits a request answered outside 1..399."""

    @property
    def app(self) -> Any:
        return self.owner.app


async def serve_admitted(
    host: DoorHost, scope: Scope, receive: Receive, send: Send, tenant: TenantId, size: int
) -> None:
    """The door's steps in Python, where the native door is missing (and the reference
    the tests hold the door to)."""
    message = await receive()
    body = message.get("body", b"")
    if message["type"] != "http.request" or message.get("more_body") or len(body) != size:
        await host.general(scope, replay(message, receive), send)
        return
    meta = f"{scope.get('method', '')} {scope.get('path', '')}".encode("utf-8", "replace")
    try:
        digest, seal = await host.spool.submit(tenant, [body], host.source, meta)
    except StoreError:  # not recorded: never accepted, the app never sees it
        await host.refuse(scope, receive, send, tenant, size)
        return
    provenance = scope[SCOPE_KEY] = RequestProvenance(
        host.guard, tenant, host.source, size=size, digest=digest, seal=seal
    )
    header = (PROVENANCE_HEADER, seal.encode("ascii"))
    status = 0

    def app_send(message: Message) -> Awaitable[None]:  # no coroutine of its own
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), header]}
        return send(message)

    token = serve_tenant(tenant)
    try:
        await host.app(scope, replay(message, receive), app_send)
    finally:  # an accepted body's request is audited by the spool's indexer
        end_serving(token)
        if not 0 < status < 400:
            host.denied(scope, tenant, status or None, provenance)
        decision = "allow" if 0 < status < 400 else "deny"
        host.guard.telemetry.count_request(decision, status, size)
