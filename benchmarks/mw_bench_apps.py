"""The apps ``bench_middleware.py`` serves: one Starlette endpoint, bare and guarded.

``bare`` and ``guarded`` are the same endpoint (``POST /ingest`` reads the whole body,
as an ingestion service does, and answers 201 with its size); ``guarded`` wraps it in
``GuardMiddleware`` on the state directory of ``KAIRO_GUARD_HOME`` (the client sends a
tenant's API key). The guarded app is built only when asked for, so serving ``bare``
never opens a guard. Equivalent to the measuring harness's ``mw_apps`` module, kept here
so the benchmark runs on its own.

``wrapped`` and ``suspended`` are the floor ``bench_middleware_floor.py`` measures: the
least any middleware that reads the body before the app and adds a response header does
(``wrapped``), and that plus one wait for another party before the app runs, answered on
the loop's next turn (``suspended``: what making the body durable elsewhere costs at the
very least, the writing itself free). ``unwritten`` is ``guarded`` whose spool answers
every body at once with a made-up digest and seal, writing nothing: GuardMiddleware's
own work on the event loop without the writer's (a measurement only, never a service).
``stepped`` is ``guarded`` with its admitted requests served by the middleware's Python
steps instead of the native door (what a machine without the door's extension runs).
"""

from __future__ import annotations

import asyncio
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


class _Wrapped:
    """Reads the request's first body message, hands it to the app first, and adds a
    header to the response: the fixed work of any body-inspecting middleware."""

    def __init__(self, app: Any, *, wait: bool) -> None:
        self.app = app
        self.wait = wait

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        first: Any = await receive()
        if self.wait:  # one round trip through the event loop, as a durable write costs
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            loop.call_soon(done.set_result, None)
            await done

        async def replayed() -> Any:
            nonlocal first
            if first is not None:
                message, first = first, None
                return message
            return await receive()

        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"x-tag", b"t" * 120)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, replayed, tagged)


wrapped = _Wrapped(_endpoint(), wait=False)
suspended = _Wrapped(_endpoint(), wait=True)


def _guarded() -> Any:
    from kairo_guard import Guard, GuardMiddleware

    return GuardMiddleware(_endpoint(), guard=Guard())


def _unwritten() -> Any:
    app = _guarded()
    made_up = ("0" * 64, "kg1." + "x" * 146)  # a seal of the usual length

    def submit(tenant: str, chunks: list[bytes], source: str, meta: bytes) -> Any:
        done = asyncio.get_running_loop().create_future()
        done.set_result(made_up)
        return done

    class Instant:  # the native writer's side: every body completed as it is submitted
        queued_bytes = 0

        def submit(self, future: Any, *_: Any) -> None:
            future.set_result(made_up)

    instant = Instant()
    app.spool.submit = submit
    app.spool.native_writer = lambda loop: instant
    app._door = app.make_door()
    return app


def _stepped() -> Any:
    app = _guarded()
    app._door = None  # the admitted request served by the Python steps, not the C door
    return app


def __getattr__(name: str) -> Any:  # the guarded apps are built on first access
    makers = {"guarded": _guarded, "unwritten": _unwritten, "stepped": _stepped}
    if name in makers:
        globals()[name] = app = makers[name]()
        return app
    raise AttributeError(name)
