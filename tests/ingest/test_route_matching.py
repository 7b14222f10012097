"""Sink and model routes are matched on the path the application routes on.

A real Starlette app behind a real uvicorn: under ``--root-path``, mounted with
``Mount``, and with ``Mount``s of its own. Paths the middleware cannot be sure about
(they normalize to another route) are refused with their own rule.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kg_testing import running_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Mount, Route

from kairo_guard import Guard, current_tenant
from kairo_guard.core.sinks import Sink
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware

Keys = dict[str, str]


def _routes() -> list[BaseRoute]:
    async def train(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"accepted for {current_tenant()}", status_code=202)

    async def infer(request: Request) -> JSONResponse:
        return JSONResponse({"model": request.path_params["model_id"]})

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return [
        Route("/train/examples", train, methods=["POST"]),
        Route("/v1/models/{model_id:path}/infer", infer, methods=["POST"]),
        Route("/healthz", healthz),
    ]


def _guarded(guard: Guard, app: Any, prefix: str = "", sink: Sink | None = None) -> Any:
    sink = sink or guard.resolve_sink("router-train", kind="shared-training")
    return GuardMiddleware(
        app,
        guard=guard,
        sink_routes={f"{prefix}/train/examples": sink},
        model_routes=[f"{prefix}/v1/models/{{model_id}}/infer"],
        public_paths=[f"{prefix}/healthz"],
    )


@pytest.fixture
def keys(guard: Guard, tmp_path: Path) -> Keys:
    guard.grant_agreement("acme")
    builder = guard.tenant_dataset("acme")
    builder.add_all(guard.label_record({"text": f"acme {i}"}, tenant="acme") for i in range(3))
    guard.register_model("acme-ft", dataset=builder.write(tmp_path / "ds"), owner="acme")
    return {t: new_api_key(guard.store, t) for t in ("acme", "globex")}


def _post(url: str, key: str) -> httpx.Response:
    return httpx.post(url, content=b'{"x": 1}', headers={"authorization": f"Bearer {key}"})


def _served(guard: Guard, variant: str) -> tuple[Any, dict[str, Any], str]:
    """The app, the server's options and the URL prefix for one way of mounting it."""
    if variant == "root_path":  # uvicorn --root-path /api behind a proxy that strips it
        return _guarded(guard, Starlette(routes=_routes())), {"root_path": "/api"}, ""
    if variant == "mounted":  # Mount("/svc", guarded app)
        inner = _guarded(guard, Starlette(routes=_routes()))
        return Starlette(routes=[Mount("/svc", app=inner)]), {}, "/svc"
    # the guard around an app with a Mount, served under a root path
    with_mounts = Starlette(routes=[Mount("/svc", routes=_routes())])
    return _guarded(guard, with_mounts, "/svc"), {"root_path": "/api"}, "/svc"


@pytest.mark.parametrize("variant", ["root_path", "mounted", "app_with_mounts"])
def test_when_the_app_is_mounted_under_a_prefix_then_sink_and_model_routes_still_hold(
    guard: Guard, keys: Keys, variant: str
) -> None:
    app, options, prefix = _served(guard, variant)
    with running_server(app, **options) as url:
        base = f"{url}{prefix}"
        shared = _post(f"{base}/train/examples", keys["acme"])
        other_model = _post(f"{base}/v1/models/acme-ft/infer", keys["globex"])
        own_model = _post(f"{base}/v1/models/acme-ft/infer", keys["acme"])
        health = httpx.get(f"{base}/healthz")
    assert shared.status_code == 403
    assert other_model.status_code == 403
    assert (own_model.status_code, own_model.json()) == (200, {"model": "acme-ft"})
    assert health.status_code == 200


def test_when_served_under_root_path_then_the_fine_tune_owner_still_reaches_its_route(
    guard: Guard, keys: Keys
) -> None:
    sink = guard.resolve_sink("acme-ft", kind="tenant-fine-tune:acme")
    app = _guarded(guard, Starlette(routes=_routes()), sink=sink)
    with running_server(app, root_path="/api") as url:
        own = _post(f"{url}/train/examples", keys["acme"])
        other = _post(f"{url}/train/examples", keys["globex"])
    assert (own.status_code, own.text) == (202, "accepted for acme")
    assert other.status_code == 403


def test_when_a_tenant_with_an_agreement_posts_to_another_tenants_fine_tune_route_then_403(
    guard: Guard, keys: Keys
) -> None:
    guard.grant_agreement("globex")
    sink = guard.resolve_sink("acme-ft", kind="tenant-fine-tune:acme")
    app = _guarded(guard, Starlette(routes=_routes()), sink=sink)
    with running_server(app) as url:
        assert _post(f"{url}/train/examples", keys["globex"]).status_code == 403
        assert _post(f"{url}/train/examples", keys["acme"]).status_code == 202


# -- paths the middleware cannot be sure about -----------------------------------------


def _call(app: Any, key: str, path: str, raw_path: bytes | None = None) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode() if raw_path is None else raw_path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("//train/examples", None),
        ("/train//examples", None),
        ("/train/examples/", None),
        ("/./train/examples", None),
        ("/train/./examples", None),
        ("/x/../train/examples", None),
        ("/TRAIN/examples", None),
        ("/Train/Examples", None),
        ("/train%2Fexamples", b"/train%252Fexamples"),
        ("/train/examples", b"/train%2Fexamples"),
        ("/train\\examples", None),
        ("/v1/models/globex-x/../acme-ft/infer", None),
        ("/v1/models//acme-ft/infer", None),
        ("/v1/models/acme-ft/infer/", None),
        ("/V1/models/acme-ft/infer", None),
        ("/v1/models/acme%2Dft/infer", b"/v1/models/acme%252Dft/infer"),
    ],
)
def test_when_a_path_normalizes_to_a_guarded_route_then_403_route_ambiguous_and_audited(
    guard: Guard, keys: Keys, path: str, raw_path: bytes | None
) -> None:
    # The caller is the owner: the literal route, where it matches, would admit it.
    sink = guard.resolve_sink("acme-ft", kind="tenant-fine-tune:acme")
    app = _guarded(guard, Starlette(routes=_routes()), sink=sink)
    status, body = _call(app, keys["acme"], path, raw_path)
    assert status == 403
    assert orjson.loads(body)["rule"] == "route.ambiguous"
    guard.audit.flush()
    entries = [
        orjson.loads(line)
        for line in (guard.settings.home / "audit" / "audit.jsonl").read_bytes().splitlines()
    ]
    denied = [e for e in entries if e.get("event") == "request" and e.get("status") == 403]
    assert [e.get("rule") for e in denied] == ["route.ambiguous"]
    assert path.encode() not in (guard.settings.home / "audit" / "audit.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/train/examples", 202),
        ("/v1/models/acme-ft/infer", 200),
        ("/v1/models/org/acme-ft/infer", 403),  # another (unknown) model id
        ("/other//path", 404),  # not canonical, but no guarded route either way
        ("/healthz/", 307),
    ],
)
def test_when_a_path_is_canonical_or_reaches_no_guarded_route_then_it_is_judged_as_routed(
    guard: Guard, keys: Keys, path: str, status: int
) -> None:
    sink = guard.resolve_sink("acme-ft", kind="tenant-fine-tune:acme")
    app = _guarded(guard, Starlette(routes=_routes()), sink=sink)
    assert _call(app, keys["acme"], path)[0] == status
