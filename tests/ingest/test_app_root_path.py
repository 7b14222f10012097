"""An app that sets its own root path before it routes is judged under that one.

``FastAPI(root_path="/api")`` puts ``/api`` in ``scope["root_path"]`` itself, replacing
the server's, and routes ``/api/train/examples`` as ``/train/examples``. The middleware
around it judged the path as the server gave it (no root path): no declared route, so a
tenant reached the shared training handler (202) and another tenant's fine-tune route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kg_testing import running_server
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware

from kairo_guard import Guard
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.ingest.routing import app_root_path

# deprecated by FastAPI in favour of the server's root path, still served as described
pytestmark = pytest.mark.filterwarnings("ignore:The `root_path` parameter is deprecated")


def _service(guard: Guard, *, wrap: bool = False) -> Any:
    api = FastAPI(root_path="/api")

    @api.post("/train/examples", status_code=202)
    async def train() -> dict[str, str]:
        return {"reached": "shared training"}

    @api.post("/ft/examples", status_code=202)
    async def fine_tune() -> dict[str, str]:
        return {"reached": "acme's fine-tune"}

    @api.post("/v1/models/{model_id}/infer")
    async def infer(model_id: str) -> dict[str, str]:
        return {"reached": model_id}

    @api.post("/docs/upload", status_code=201)
    async def upload() -> dict[str, str]:
        return {"reached": "upload"}

    inner: Any = GZipMiddleware(api) if wrap else api
    return GuardMiddleware(
        inner,
        guard=guard,
        sink_routes={
            "/train/examples": guard.resolve_sink("root-train", kind="shared-training"),
            "/ft/examples": guard.resolve_sink("root-ft", kind="tenant-fine-tune:acme"),
        },
        model_routes=["/v1/models/{model_id}/infer"],
    )


@pytest.mark.parametrize("wrap", [False, True], ids=["direct", "under-middleware"])
def test_when_fastapi_sets_its_own_root_path_then_sink_and_model_routes_are_refused(
    guard: Guard, wrap: bool, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    guard.grant_agreement("globex")  # an agreement of its own: not one for acme's routes
    builder = guard.tenant_dataset("acme")
    builder.add_all(guard.label_record({"text": f"acme {i}"}, tenant="acme") for i in range(3))
    guard.register_model("acme-ft", dataset=builder.write(tmp_path / "ds"), owner="acme")
    acme, globex = new_api_key(guard.store, "acme"), new_api_key(guard.store, "globex")

    def post(url: str, path: str, key: str) -> httpx.Response:
        return httpx.post(
            url + path, json={"text": "x"}, headers={"authorization": f"Bearer {key}"}
        )

    with running_server(_service(guard, wrap=wrap)) as url:
        assert post(url, "/api/train/examples", acme).status_code == 403
        assert post(url, "/api/ft/examples", globex).status_code == 403
        assert post(url, "/api/v1/models/acme-ft/infer", globex).status_code == 403
        # what each may do still works under the prefix
        assert post(url, "/api/ft/examples", acme).status_code == 202
        assert post(url, "/api/v1/models/acme-ft/infer", acme).status_code == 200
        uploaded = post(url, "/api/docs/upload", globex)
        assert uploaded.status_code == 201
        assert uploaded.headers["kairo-provenance"]


def test_the_root_path_is_found_on_the_app_or_what_it_wraps() -> None:
    assert app_root_path(FastAPI(root_path="/api")) == "/api"
    assert app_root_path(GZipMiddleware(FastAPI(root_path="/v2"))) == "/v2"
    assert app_root_path(FastAPI()) is None
    assert app_root_path(Starlette()) is None

    class Loop:  # a wrapper whose .app leads back to itself: the walk ends
        def __init__(self) -> None:
            self.app = self

    assert app_root_path(Loop()) is None
