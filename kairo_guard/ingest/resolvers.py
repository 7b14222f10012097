"""Who is calling: tenant resolvers for the middleware.

A resolver looks at a request's direct peer and headers and returns the tenant its
credentials prove, ``None`` when the request carries none of its credentials, or raises
:class:`~kairo_guard.core.exceptions.AuthenticationError` when they are present but bad.
A bare ``X-Tenant-Id`` is never trusted: a tenant header counts only from a configured
authenticating proxy, judged by the connection's peer address, never by
``X-Forwarded-For``. (Run uvicorn with ``proxy_headers=False`` or a precise
``forwarded_allow_ips``: its proxy-header support rewrites the peer address.)
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kairo_guard.core.exceptions import AuthenticationError
from kairo_guard.core.types import TENANT_PATTERN, TenantId
from kairo_guard.ingest.apikeys import ApiKeyVerifier

DEFAULT_TENANT_HEADER = "x-kairo-tenant"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What resolvers may look at: the direct peer, the path and the raw headers."""

    peer: str | None
    path: str
    headers: Sequence[tuple[bytes, bytes]]

    def values(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lowercase), in order."""
        return [v for k, v in self.headers if k == name]


class TenantResolver(Protocol):
    """Turns a request's credentials into a tenant id.

    Contract: return the tenant, or None if the request holds none of this resolver's
    credentials; raise AuthenticationError for bad, duplicate or ambiguous ones; never
    trust anything the client can set freely.
    """

    async def resolve(self, request: RequestInfo) -> TenantId | None:
        """Return the tenant proven by the request, None if no credentials of ours."""
        ...


class ApiKeyResolver:
    """``Authorization: Bearer kgk...`` or ``X-Api-Key: kgk...``; exactly one of them."""

    def __init__(self, verifier: ApiKeyVerifier) -> None:
        self._verifier = verifier

    async def resolve(self, request: RequestInfo) -> TenantId | None:
        """See :class:`TenantResolver`."""
        auth = request.values(b"authorization")
        keys = request.values(b"x-api-key")
        if not auth and not keys:
            return None
        if len(auth) + len(keys) > 1:
            raise AuthenticationError("more than one credential header; send exactly one")
        if auth:
            scheme, _, token = auth[0].decode("latin-1").strip().partition(" ")
            if scheme.lower() != "bearer":
                raise AuthenticationError("unsupported authorization scheme; use Bearer")
        else:
            token = keys[0].decode("latin-1")
        token = token.strip()
        if not self._verifier.well_formed(token):
            raise AuthenticationError("malformed API key")
        tenant = self._verifier.cached(token)
        if tenant is None:  # not verified within the last second: read and hash off-loop
            loop = asyncio.get_running_loop()
            tenant = await loop.run_in_executor(None, self._verifier.verify, token)
        if tenant is None:
            raise AuthenticationError("invalid or revoked API key")
        return tenant


class TrustedProxyResolver:
    """A tenant header set by an authenticating proxy, trusted only from its address."""

    def __init__(
        self, trusted_peers: Iterable[str], *, header: str = DEFAULT_TENANT_HEADER
    ) -> None:
        self._networks = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_peers)
        self._header = header.lower().encode("latin-1")

    def trusts(self, peer: str | None) -> bool:
        """True if ``peer`` is one of the configured proxies."""
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in net for net in self._networks)

    async def resolve(self, request: RequestInfo) -> TenantId | None:
        """See :class:`TenantResolver`."""
        values = request.values(self._header)
        if not values or not self.trusts(request.peer):
            return None  # from anyone but the proxy the header means nothing
        if len(values) != 1:
            raise AuthenticationError("the proxy sent the tenant header more than once")
        tenant = values[0].decode("latin-1").strip()
        if TENANT_PATTERN.fullmatch(tenant) is None:
            raise AuthenticationError("the proxy sent a malformed tenant id")
        return tenant


class CompositeResolver:
    """Asks every resolver; two that name different tenants are a conflict."""

    def __init__(self, resolvers: Iterable[TenantResolver]) -> None:
        self._resolvers = tuple(resolvers)

    async def resolve(self, request: RequestInfo) -> TenantId | None:
        """See :class:`TenantResolver`."""
        found = {t for r in self._resolvers if (t := await r.resolve(request)) is not None}
        if len(found) > 1:
            raise AuthenticationError("credentials name different tenants")
        return found.pop() if found else None
