"""The FastAPI adapter, on real FastAPI under a real uvicorn: one call installs the
middleware, a dependency hands handlers the tenant and the body's seal, and the OpenAPI
schema documents the API-key scheme."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kg_testing import running_server
from pydantic import BaseModel

from kairo_guard import Guard, current_tenant
from kairo_guard.core.content import content_digest
from kairo_guard.core.types import DataClass
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.integrations.fastapi import Provenance, install


class Document(BaseModel):
    text: str


def _app(guard: Guard) -> FastAPI:
    app = FastAPI()

    @app.post("/documents", status_code=201)
    async def upload(doc: Document, provenance: Provenance) -> dict[str, Any]:
        return {
            "tenant": provenance.tenant,
            "ambient": current_tenant(),
            "seal": provenance.seal,
            "chars": len(doc.text),
        }

    @app.post("/train/examples")
    async def train(doc: Document) -> dict[str, str]:
        raise AssertionError("a tenant never reaches a shared training route")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/public/whoami")
    async def whoami(provenance: Provenance) -> dict[str, str]:
        return {"tenant": provenance.tenant}

    install(
        app,
        guard,
        sink_routes={"/train/examples": guard.resolve_sink("router-train", kind="shared-training")},
        public_paths=["/healthz", "/openapi.json", "/public/whoami"],
    )
    return app


@pytest.fixture
def served(guard: Guard) -> Iterator[tuple[str, str]]:
    key = new_api_key(guard.store, "acme")
    with running_server(_app(guard)) as url:
        yield url, key


def test_a_tenants_upload_reaches_the_handler_with_its_tenant_and_seal(
    guard: Guard, served: tuple[str, str]
) -> None:
    url, key = served
    text = "Acme board minutes: the merger closes in May."
    body = b'{"text": "' + text.encode() + b'"}'
    response = httpx.post(
        f"{url}/documents",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    got = response.json()
    assert (got["tenant"], got["ambient"], got["chars"]) == ("acme", "acme", len(text))
    label = guard.open_seal(got["seal"])
    assert (label.tenant, label.data_class) == ("acme", DataClass.CUSTOMER_CONTENT)
    assert label.digest == content_digest(body)
    assert response.headers["kairo-provenance"] == got["seal"]


def test_a_spoofed_tenant_header_and_a_shared_training_route_are_refused(
    served: tuple[str, str],
) -> None:
    url, key = served
    doc = {"text": "anything"}
    spoofed = httpx.post(f"{url}/documents", json=doc, headers={"X-Tenant-Id": "acme"})
    assert spoofed.status_code == 401
    training = httpx.post(
        f"{url}/train/examples", json=doc, headers={"Authorization": f"Bearer {key}"}
    )
    assert training.status_code == 403
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}


def test_a_route_that_needs_a_tenant_answers_401_on_a_public_path(
    served: tuple[str, str],
) -> None:
    url, _ = served
    response = httpx.get(f"{url}/public/whoami")
    assert response.status_code == 401
    assert "API key" in response.json()["detail"]


def test_the_openapi_schema_shows_the_api_key_scheme_on_routes_that_use_it(
    served: tuple[str, str],
) -> None:
    url, _ = served
    schema = httpx.get(f"{url}/openapi.json").json()
    assert schema["components"]["securitySchemes"]["kairoApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A tenant API key (`kairo-guard tenants add`), as `Authorization: Bearer`.",
    }
    assert schema["paths"]["/documents"]["post"]["security"] == [{"kairoApiKey": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]
