"""A guarded ingestion endpoint for tests that run it under a real uvicorn process.

``app`` is a Starlette endpoint (``POST /documents`` reads the whole body and answers 201
with its SHA-256) wrapped in ``GuardMiddleware`` on the state directory and key of the
environment (``KAIRO_GUARD_HOME``, ``KAIRO_GUARD_KEY``). The guard is opened when the
module is imported, in the server process.
"""

from __future__ import annotations

import hashlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard, GuardMiddleware


async def documents(request: Request) -> JSONResponse:
    """Read the whole body; answer its digest."""
    body = await request.body()
    return JSONResponse({"sha256": hashlib.sha256(body).hexdigest()}, status_code=201)


app = GuardMiddleware(
    Starlette(routes=[Route("/documents", documents, methods=["POST"])]), guard=Guard()
)
