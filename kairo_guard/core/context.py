"""The ambient tenant context: which tenant's request the current code is serving.

Set by the middleware for each request, or by :func:`tenant_context` in scripts. It is a
:class:`contextvars.ContextVar`, so each asyncio task and each thread started with
:func:`contextvars.copy_context` sees its own value. Inside a tenant's context every
record is treated as that tenant's customer content unless it is verified anonymized
telemetry or operator data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from kairo_guard.core.types import TenantId, validate_tenant

_CURRENT_TENANT: ContextVar[TenantId | None] = ContextVar("kairo_guard_tenant", default=None)

TENANT_VAR = _CURRENT_TENANT
"""The context variable itself (the native door sets and resets it)."""
serve_tenant = _CURRENT_TENANT.set
"""Serve ``tenant`` from here, whatever context encloses it; returns the token that
:func:`end_serving` takes (the middleware's per-request form of :class:`serving_tenant`,
two C calls: pair them in ``try``/``finally`` in the same task)."""
end_serving = _CURRENT_TENANT.reset
"""Give back the tenant context :func:`serve_tenant` replaced."""


def current_tenant() -> TenantId | None:
    """Return the tenant whose request is being served here, or None."""
    return _CURRENT_TENANT.get()


@contextmanager
def tenant_context(tenant: TenantId) -> Iterator[TenantId]:
    """Run the ``with`` block as serving ``tenant``; nested contexts must agree.

    Raises:
        ValueError: if ``tenant`` is not a valid tenant id, or another tenant's context
            is already active (mixing two tenants' requests is a bug worth stopping).
    """
    validate_tenant(tenant)
    outer = _CURRENT_TENANT.get()
    if outer is not None and outer != tenant:
        raise ValueError(f"already inside tenant {outer!r}'s context; refusing to switch tenants")
    token = _CURRENT_TENANT.set(tenant)
    try:
        yield tenant
    finally:
        _CURRENT_TENANT.reset(token)


class serving_tenant:
    """Run the ``with`` block as serving ``tenant``, whatever context encloses it.

    For the middleware: the caller it authenticated decides whose request this is, not
    any context the server itself runs in. Scripts use :func:`tenant_context`. (A class,
    not a generator: it is entered on every request.)
    """

    __slots__ = ("_tenant", "_token")

    def __init__(self, tenant: TenantId) -> None:
        self._tenant = tenant
        self._token: Token[TenantId | None] | None = None

    def __enter__(self) -> TenantId:
        self._token = _CURRENT_TENANT.set(self._tenant)
        return self._tenant

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _CURRENT_TENANT.reset(self._token)
            self._token = None
