"""FastAPI: the guard's middleware in one call, the request's tenant and seal as a
dependency, and the API-key scheme in the OpenAPI schema.

::

    from fastapi import FastAPI
    from kairo_guard.integrations.fastapi import Provenance, install

    app = FastAPI()
    install(app, guard, sink_routes={"/train/examples": "router-train"})

    @app.post("/documents", status_code=201)
    async def upload(doc: Document, provenance: Provenance) -> dict[str, str]:
        return {"tenant": provenance.tenant, "seal": provenance.seal or ""}

:func:`install` adds :class:`~kairo_guard.ingest.middleware.GuardMiddleware` (pure ASGI)
to the app with the same arguments; the middleware authenticates every request before
FastAPI sees it. :data:`Provenance` is the request's
:class:`~kairo_guard.ingest.provenance.RequestProvenance` (tenant, body seal); a route
that declares it shows the bearer API-key scheme in the OpenAPI schema, and answers 401
if it was reached without a tenant (a path the middleware was told is public). Needs
``pip install "kairo-guard[fastapi]"``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kairo_guard.guard import Guard
from kairo_guard.ingest.middleware import SCOPE_KEY, GuardMiddleware
from kairo_guard.ingest.provenance import RequestProvenance

__all__ = ["Provenance", "install", "provenance"]

API_KEY_SCHEME = HTTPBearer(
    auto_error=False,  # the middleware has authenticated already; this only documents it
    scheme_name="kairoApiKey",
    description="A tenant API key (`kairo-guard tenants add`), as `Authorization: Bearer`.",
)


def install(app: FastAPI, guard: Guard, **options: Any) -> None:
    """Wrap ``app`` in the guard's middleware; ``options`` are those of
    :class:`~kairo_guard.ingest.middleware.GuardMiddleware` (``sink_routes``,
    ``public_paths``, ``model_routes``, ``resolver``, ``max_body_bytes``, ...).

    Call it once, before the app serves (FastAPI builds its middleware stack then).
    """
    app.add_middleware(GuardMiddleware, guard=guard, **options)


def provenance(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(API_KEY_SCHEME)],
) -> RequestProvenance:
    """The request's tenant and body seal, as the middleware recorded them.

    Raises:
        HTTPException: 401 when the request has no tenant (a public path).
    """
    found = request.scope.get(SCOPE_KEY)
    if not isinstance(found, RequestProvenance):
        raise HTTPException(status_code=401, detail="this route needs a tenant's API key")
    return found


Provenance = Annotated[RequestProvenance, Depends(provenance)]
"""A route parameter of this type receives the request's :func:`provenance`."""
