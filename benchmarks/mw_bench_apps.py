"""The two apps ``bench_middleware.py`` serves: one Starlette endpoint, bare and guarded.

``bare`` and ``guarded`` are the same endpoint (``POST /ingest`` reads the whole body,
as an ingestion service does, and answers 201 with its size); ``guarded`` wraps it in
``GuardMiddleware`` on the state directory of ``KAIRO_GUARD_HOME`` (the client sends a
tenant's API key). The guarded app is built only when asked for, so serving ``bare``
never opens a guard. Equivalent to the measuring harness's ``mw_apps`` module, kept here
so the benchmark runs on its own.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def ingest(request: Request) -> JSONResponse:
    """Read the whole body; answer its size."""
    body = await request.body()
    return JSONResponse({"bytes": len(body)}, status_code=201)


def _endpoint() -> Starlette:
    return Starlette(routes=[Route("/ingest", ingest, methods=["POST"])])


bare = _endpoint()


def _guarded() -> Any:
    from kairo_guard import Guard, GuardMiddleware

    return GuardMiddleware(_endpoint(), guard=Guard())


def __getattr__(name: str) -> Any:  # the guarded app is built on first access
    if name == "guarded":
        globals()["guarded"] = app = _guarded()
        return app
    raise AttributeError(name)
