"""Signed tenant context in W3C baggage, from one guarded service to the next.

W3C baggage is visible and unauthenticated, so the tenant never travels in it raw: the
``kairo.tenant`` entry holds a token ``kgb1.<key_id>.<payload>`` where the payload is
the tenant id and an expiry sealed with AES-GCM under the guard's ``baggage`` subkey,
bound to the W3C trace id of the request (a token lifted into another trace does not
open). Tokens live ``[propagation] token_ttl`` seconds (default 300).

Inbound, :class:`~kairo_guard.ingest.baggage.BaggageResolver` (part of the middleware's
default resolver; ingestion, not telemetry, decides who a caller is) accepts a
token only from a peer in ``[propagation] trusted_peers``, only if it opens under a key
of the ring, names the trace of the request's ``traceparent`` and has not expired. A
valid token and an API key of another tenant are a conflict (401). Anything else is
ignored, audited (``baggage.rejected``) and stripped before the app runs.

Outbound, :func:`httpx_event_hook` / :func:`async_httpx_event_hook` add the current
tenant's fresh token and the ``traceparent`` to requests made inside a request's
context. :func:`guard_context_submit` and :func:`bind_guard_context` carry that context
into thread pools (asyncio tasks copy it by themselves).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import functools
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Executor, Future
from typing import ParamSpec, Protocol, TypeVar

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kairo_guard.core.context import current_tenant
from kairo_guard.core.exceptions import TokenRejected as TokenRejected  # re-exported here
from kairo_guard.core.keys import PURPOSE_BAGGAGE, KeyRing
from kairo_guard.core.types import TENANT_PATTERN, TenantId
from kairo_guard.otel.headers import BAGGAGE_KEY, inbound_trace_id, split_baggage
from kairo_guard.otel.protocols import TokenAuthority

P = ParamSpec("P")
R = TypeVar("R")

TOKEN_VERSION = "kgb1"  # noqa: S105 - a format tag, not a secret
CLOCK_LEEWAY = 5
"""Seconds a token's issue time may lie ahead of this service's clock."""
DEFAULT_TOKEN_TTL = 300
MAX_BAGGAGE_BYTES = 8192
"""The W3C limit of a ``baggage`` header."""
_NONCE = 12
_AAD = b"kairo-guard/baggage/v1\x00"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_TRACE_CONTEXT = TraceContextTextMapPropagator()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if _B64URL.fullmatch(text) is None:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TenantTokenCodec:
    """Makes and opens tenant tokens bound to a trace.

    Args:
        keys: the guard's key ring; the signing key seals, every key in it opens.
        ttl: lifetime of a token in seconds.
        clock: Unix-seconds clock.
        erased_at: when the tenant was erased, or None; a token issued up to then is
            refused (an erased tenant's context must not come back through baggage).
    """

    def __init__(
        self,
        keys: KeyRing,
        *,
        ttl: int = DEFAULT_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
        erased_at: Callable[[TenantId], float | None] | None = None,
    ) -> None:
        if ttl < 1:
            raise ValueError("token ttl must be at least 1 second")
        self._keys = keys
        self._ttl = ttl
        self._clock = clock
        self._erased_at = erased_at

    def _aad(self, key_id: str, trace_id: int) -> bytes:
        return _AAD + key_id.encode("ascii") + b"\x00" + trace_id.to_bytes(16, "big")

    def issue(self, tenant: TenantId, trace_id: int) -> str:
        """Return a token for ``tenant`` valid only in trace ``trace_id``."""
        if TENANT_PATTERN.fullmatch(tenant) is None or not 0 < trace_id < 1 << 128:
            raise ValueError("a token needs a valid tenant id and a valid trace id")
        kid = self._keys.signing_key_id
        nonce = os.urandom(_NONCE)
        now = int(self._clock())
        plain = orjson.dumps({"t": tenant, "iat": now, "exp": now + self._ttl})
        sealed = AESGCM(self._keys.subkey(PURPOSE_BAGGAGE, kid)).encrypt(
            nonce, plain, self._aad(kid, trace_id)
        )
        return f"{TOKEN_VERSION}.{kid}.{_b64(nonce + sealed)}"

    def open(self, token: str, trace_id: int) -> TenantId:
        """Return the tenant a token proves in trace ``trace_id``.

        Raises:
            TokenRejected: malformed, unknown key, forged or other trace, expired.
        """
        version, _, rest = token.partition(".")
        kid, _, payload = rest.partition(".")
        if version != TOKEN_VERSION or not kid or not payload or len(token) > 512:
            raise TokenRejected("malformed")
        if kid not in self._keys.keys:
            raise TokenRejected("unknown-key")
        try:
            raw = _unb64(payload)
        except (binascii.Error, ValueError):
            raise TokenRejected("malformed") from None
        try:
            plain = AESGCM(self._keys.subkey(PURPOSE_BAGGAGE, kid)).decrypt(
                raw[:_NONCE], raw[_NONCE:], self._aad(kid, trace_id)
            )
        except (InvalidTag, ValueError):
            raise TokenRejected("invalid-or-other-trace") from None
        try:
            claims = orjson.loads(plain)
            tenant, issued, expires = claims["t"], claims["iat"], claims["exp"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise TokenRejected("malformed") from None
        if not isinstance(tenant, str) or TENANT_PATTERN.fullmatch(tenant) is None:
            raise TokenRejected("malformed")
        if not isinstance(expires, int) or not isinstance(issued, int):
            raise TokenRejected("malformed")
        now = self._clock()
        if now >= expires:
            raise TokenRejected("expired")
        # the issue time is the token's own claim: one from the future (a peer's fast
        # clock) could pass the erasure check below, one with a longer life than ours
        # would outlive what this service allows
        if issued > now + CLOCK_LEEWAY or expires - issued > self._ttl:
            raise TokenRejected("bad-lifetime")
        if self._erased_at is not None:
            try:
                erased = self._erased_at(tenant)
            except Exception:  # noqa: BLE001 - fail closed: unsure, no tenant
                raise TokenRejected("guard-error") from None
            if erased is not None and issued <= erased:
                raise TokenRejected("tenant-erased")
        return tenant


def token_codec(guard: TokenAuthority) -> TenantTokenCodec:
    """The guard's token codec (its key ring, ``[propagation] token_ttl``, its clock, its
    erasure records); ``guard`` is a :class:`~kairo_guard.guard.Guard` or any
    :class:`~kairo_guard.otel.protocols.TokenAuthority`."""

    def erased_at(tenant: TenantId) -> float | None:
        return guard.store.erased_tenants().get(guard.keys.pseudonym(tenant))

    return TenantTokenCodec(
        guard.keys, ttl=guard.settings.propagation.token_ttl, clock=guard.clock, erased_at=erased_at
    )


# -- outbound ------------------------------------------------------------------------


class HeadersRequest(Protocol):
    """What the hooks need of an outgoing request (``httpx.Request`` has it)."""

    @property
    def headers(self) -> MutableMapping[str, str]:
        """The request's headers, case-insensitive, mutable."""
        ...


def inject_tenant(headers: MutableMapping[str, str], codec: TenantTokenCodec) -> bool:
    """Put the trace and the current tenant's token into outgoing ``headers``.

    Kairo baggage the headers already hold is removed first: only a fresh token for
    the current context goes out. Nothing is added outside a tenant's context or
    without a trace (an SDK span or an inbound ``traceparent``).

    Returns:
        True if a token was added.
    """
    if "traceparent" not in headers:
        _TRACE_CONTEXT.inject(headers)
    tenant = current_tenant()
    token = None
    if tenant is not None:
        traceparent = headers.get("traceparent")
        pairs = [(b"traceparent", traceparent.encode("latin-1"))] if traceparent else []
        trace_id = inbound_trace_id(pairs)
        if trace_id is not None:
            token = codec.issue(tenant, trace_id)
    members = baggage_members(headers.get("baggage") or "", token)
    if members:
        headers["baggage"] = ",".join(members)
    elif "baggage" in headers:
        del headers["baggage"]
    return token is not None


def baggage_members(existing: str, token: str | None) -> list[str]:
    """The members of an outgoing ``baggage`` header: those of ``existing`` but any
    kairo entry, then ``token``'s entry if given. Members at the end that would push
    the header past the W3C limit (8,192 bytes; past it a receiver drops the whole
    header, token included) are left out to make room for the token."""
    members = [m for k, m in split_baggage(existing) if k != BAGGAGE_KEY]
    if token is None:
        return members
    entry = f"{BAGGAGE_KEY}={token}"
    size = len(entry)
    kept = []
    for member in members:
        size += len(member.encode()) + 1
        if size > MAX_BAGGAGE_BYTES:
            break
        kept.append(member)
    return [*kept, entry]


def httpx_event_hook(guard: TokenAuthority) -> Callable[[HeadersRequest], None]:
    """An httpx ``request`` event hook that propagates the tenant context.

    ``httpx.Client(event_hooks={"request": [httpx_event_hook(guard)]})``
    """
    codec = token_codec(guard)

    def hook(request: HeadersRequest) -> None:
        inject_tenant(request.headers, codec)

    return hook


def async_httpx_event_hook(guard: TokenAuthority) -> Callable[[HeadersRequest], Awaitable[None]]:
    """The ``httpx.AsyncClient`` variant of :func:`httpx_event_hook`."""
    codec = token_codec(guard)

    async def hook(request: HeadersRequest) -> None:
        inject_tenant(request.headers, codec)

    return hook


# -- carrying the context ------------------------------------------------------------


def guard_context_submit(
    executor: Executor, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> Future[R]:
    """``executor.submit`` that runs ``fn`` in a copy of the current context (tenant,
    trace): what a thread pool started inside a request needs."""
    ctx = contextvars.copy_context()
    call: Callable[[], R] = functools.partial(fn, *args, **kwargs)
    return executor.submit(ctx.run, call)


def bind_guard_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Return ``fn`` bound to the current context: each call runs in a fresh copy of
    the context as it was here (for ``loop.run_in_executor`` and callbacks)."""
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return ctx.copy().run(fn, *args, **kwargs)

    return bound
