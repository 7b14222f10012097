"""The model registry: tenant models, shared models, access checks and the ASGI option."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kg_testing import make_guard, running_server, state_store_env
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard, GuardMiddleware, KeyRing
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.store.sqlite import DB_FILE_NAME
from kairo_guard.tenancy.manifest import MANIFEST_FILE, Manifest
from kairo_guard.tenancy.models import ModelRoutes, RegistryError


@pytest.fixture
def guard(tmp_path: Path, ring: KeyRing) -> Iterator[Guard]:
    with make_guard(tmp_path / "state", ring=ring, pii_gate=False) as g:
        yield g


def build(guard: Guard, out: Path, tenant: str) -> Manifest:
    guard.grant_agreement(tenant)
    builder = guard.tenant_dataset(tenant)
    builder.add_all(guard.label_record({"text": f"{tenant} {i}"}, tenant=tenant) for i in range(3))
    return builder.write(out)


def audit_events(guard: Guard, tmp_path: Path) -> list[dict[str, Any]]:
    guard.audit.flush()
    log = (tmp_path / "state" / "audit" / "audit.jsonl").read_bytes()
    return [orjson.loads(line) for line in log.splitlines()]


def test_when_a_tenant_model_is_registered_then_only_its_owner_may_call_it(
    guard: Guard, tmp_path: Path
) -> None:
    manifest = build(guard, tmp_path / "ds", "acme")

    info = guard.register_model("acme-support-v1", dataset=manifest, owner="acme")

    assert (info.owner, info.dataset, info.status) == ("acme", manifest.dataset_id, "active")
    assert info.manifest_digest == manifest.digest
    assert guard.check_model_access("acme-support-v1", "acme")
    assert not guard.check_model_access("acme-support-v1", "globex")
    assert not guard.check_model_access("no-such-model", "acme")
    assert [m.model_id for m in guard.models("acme")] == ["acme-support-v1"]
    assert guard.models("globex") == []


@pytest.mark.parametrize("given", ["manifest", "verified", "id", "directory"])
def test_when_the_dataset_is_given_in_any_form_then_registration_finds_its_manifest(
    guard: Guard, tmp_path: Path, given: str
) -> None:
    manifest = build(guard, tmp_path / "ds", "acme")
    dataset: Any = {
        "manifest": manifest,
        "verified": guard.open_dataset(tmp_path / "ds"),
        "id": manifest.dataset_id,
        "directory": tmp_path / "ds",
    }[given]
    assert guard.register_model("m1", dataset=dataset, owner="acme").dataset == manifest.dataset_id


def test_when_the_owner_is_not_the_datasets_tenant_then_registration_is_refused(
    guard: Guard, tmp_path: Path
) -> None:
    manifest = build(guard, tmp_path / "ds", "acme")
    with pytest.raises(RegistryError, match=r"model\.owner-mismatch"):
        guard.register_model("m1", dataset=manifest, owner="globex")
    assert guard.models() == []


def test_when_the_manifest_was_edited_then_registration_is_refused(
    guard: Guard, tmp_path: Path
) -> None:
    build(guard, tmp_path / "ds", "acme")
    doc = orjson.loads((tmp_path / "ds" / MANIFEST_FILE).read_bytes())
    (tmp_path / "ds" / MANIFEST_FILE).write_bytes(orjson.dumps({**doc, "tenant": "globex"}))
    with pytest.raises(RegistryError, match=r"dataset\.manifest-invalid"):
        guard.register_model("m1", dataset=tmp_path / "ds", owner="globex")


def test_when_the_agreement_was_revoked_then_registration_is_refused(
    guard: Guard, tmp_path: Path
) -> None:
    manifest = build(guard, tmp_path / "ds", "acme")
    guard.revoke_agreement("acme")
    with pytest.raises(RegistryError, match=r"dataset\.agreement-inactive"):
        guard.register_model("m1", dataset=manifest, owner="acme")


def test_when_a_model_id_is_taken_then_it_cannot_be_registered_again(
    guard: Guard, tmp_path: Path
) -> None:
    manifest = build(guard, tmp_path / "ds", "acme")
    guard.register_model("m1", dataset=manifest, owner="acme")
    with pytest.raises(RegistryError, match=r"model\.exists"):
        guard.register_model("m1", dataset=manifest, owner="acme")
    with pytest.raises(ValueError, match="invalid model id"):
        guard.register_model("../etc", dataset=manifest, owner="acme")


def test_when_a_shared_model_comes_from_a_shared_sink_then_everyone_may_call_it(
    guard: Guard,
) -> None:
    sink = guard.resolve_sink("router-train", kind="shared-training")

    info = guard.register_shared_model("router-v3", sink=sink)

    assert info.owner is None
    assert info.sink == "router-train (shared-training)"
    assert guard.check_model_access("router-v3", "acme")
    assert guard.check_model_access("router-v3", "globex")


def test_when_a_tenant_derived_model_is_registered_as_shared_then_it_is_refused_and_audited(
    guard: Guard, tmp_path: Path
) -> None:
    manifest = build(guard, tmp_path / "ds", "acme")
    guard.register_model("acme-ft", dataset=manifest, owner="acme")
    tenant_sink = guard.resolve_sink("acme-ft", kind="tenant-fine-tune:acme")
    shared_sink = guard.resolve_sink("router-train", kind="shared-training")

    with pytest.raises(RegistryError, match=r"model\.tenant-derived"):
        guard.register_shared_model("acme-ft-2", sink=tenant_sink)
    with pytest.raises(RegistryError, match=r"model\.tenant-derived"):
        guard.register_shared_model("acme-ft", sink=shared_sink)
    with pytest.raises(RegistryError, match=r"model\.tenant-derived"):
        guard.register_shared_model("acme-ft-3", sink=shared_sink, dataset=manifest)

    assert [m.model_id for m in guard.models()] == ["acme-ft"]
    assert not guard.check_model_access("acme-ft", "globex")
    refused = [e for e in audit_events(guard, tmp_path) if e.get("event") == "model.refused"]
    assert [e["rule"] for e in refused] == ["model.tenant-derived"] * 3
    assert all("acme" not in e["model"] for e in refused)


@pytest.mark.sqlite_only
def test_when_a_tenant_is_erased_then_its_models_are_served_to_no_one_and_keep_no_raw_id(
    guard: Guard, tmp_path: Path
) -> None:
    manifest = build(guard, tmp_path / "ds", "acme")
    guard.register_model("m-acme", dataset=manifest, owner="acme")
    guard.register_shared_model("router", sink=guard.resolve_sink("r", kind="shared-training"))

    assert guard.tenancy.models.mark_for_deletion("acme") == 1
    assert guard.tenancy.models.mark_for_deletion("acme") == 0

    assert not guard.check_model_access("m-acme", "acme")
    assert guard.check_model_access("router", "acme")
    [marked] = guard.models("acme")
    pseudonym = guard.keys.pseudonym("acme")
    # the id inside the model's name goes too (listed under the name it has now)
    assert (marked.model_id, marked.status) == (f"m-{pseudonym}", "pending_deletion")
    assert marked.owner == pseudonym
    assert not guard.check_model_access(marked.model_id, "acme")
    with sqlite3.connect(tmp_path / "state" / DB_FILE_NAME) as db:
        rows = list(db.execute("SELECT model_id, owner FROM models"))
    assert not [r for r in rows if any("acme" in str(v) for v in r)]
    assert ("router", None) in rows  # a shared model's name is not touched


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v1/models/acme-ft/infer", "acme-ft"),
        ("/v1/models/acme-ft/infer/", "acme-ft"),
        ("/v1/models/org/acme-ft/infer", "org/acme-ft"),
        ("/v1/models/acme-ft", None),
        ("/v1/other", None),
        ("/v2/chat/acme-ft", "acme-ft"),
    ],
)
def test_when_a_path_matches_a_model_route_then_its_model_id_is_extracted(
    path: str, model: str | None
) -> None:
    routes = ModelRoutes(["/v1/models/{model_id}/infer", "/v2/chat/{model_id}"])
    assert routes.model_for(path) == model


def test_when_a_model_route_has_no_placeholder_then_it_is_rejected() -> None:
    with pytest.raises(ValueError, match="model_id"):
        ModelRoutes(["/v1/models/infer"])


# -- the ASGI option on a real uvicorn ------------------------------------------------


def test_when_tenants_call_inference_routes_then_only_allowed_models_run(
    guard: Guard, tmp_path: Path
) -> None:
    manifest = build(guard, tmp_path / "ds", "acme")
    guard.register_model("acme-ft", dataset=manifest, owner="acme")
    guard.register_model("acme-old", dataset=manifest, owner="acme")
    guard.register_shared_model("router", sink=guard.resolve_sink("r", kind="shared-training"))
    keys = {t: new_api_key(guard.store, t) for t in ("acme", "globex")}
    served: list[str] = []

    async def infer(request: Request) -> JSONResponse:
        served.append(request.path_params["model_id"])
        return JSONResponse({"model": request.path_params["model_id"]})

    app = Starlette(routes=[Route("/v1/models/{model_id}/infer", infer, methods=["POST"])])
    guarded = GuardMiddleware(app, guard=guard, model_routes=["/v1/models/{model_id}/infer"])

    def call(url: str, tenant: str, model: str) -> httpx.Response:
        return httpx.post(
            f"{url}/v1/models/{model}/infer",
            json={"prompt": "hi"},
            headers={"authorization": f"Bearer {keys[tenant]}"},
        )

    with running_server(guarded) as url:
        assert call(url, "acme", "acme-ft").status_code == 200
        denied = call(url, "globex", "acme-ft")
        assert denied.status_code == 403
        assert denied.json()["error"] == "forbidden"
        assert call(url, "globex", "router").status_code == 200
        assert call(url, "globex", "unknown-model").status_code == 403
        guard.tenancy.models.mark_for_deletion("acme")
        assert call(url, "acme", "acme-ft").status_code == 403
        assert call(url, "acme", "router").status_code == 200
        assert httpx.post(f"{url}/v1/models/router/infer", json={}).status_code == 401

    assert served == ["acme-ft", "router", "router"]
    denials = [
        e
        for e in audit_events(guard, tmp_path)
        if e.get("event") == "request" and e.get("status") == 403
    ]
    assert len(denials) == 3
    assert all(len(e["model"]) == 32 for e in denials)


def test_when_the_fine_tune_example_is_given_a_model_id_then_it_registers_the_tenants_model(
    tmp_path: Path, ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "finetune_tenant.py"
    spec = importlib.util.spec_from_file_location("finetune_tenant", path)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    home = tmp_path / "state"
    monkeypatch.setenv("KAIRO_GUARD_HOME", str(home))
    monkeypatch.setenv("KAIRO_GUARD_KEY", ring.to_env_value())
    for name, value in state_store_env(home).items():  # the example's store too
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    with make_guard(home, ring=ring, pii_gate=False) as guard:
        guard.grant_agreement("acme")
        doc = guard.label_record({"text": "Acme plan: hire 12 engineers"}, tenant="acme")
    (tmp_path / "in.jsonl").write_bytes(orjson.dumps(doc) + b"\n")

    code = example.main(
        ["--tenant", "acme", "--input", str(tmp_path / "in.jsonl"), "--out",
         str(tmp_path / "ft.jsonl"), "--dataset-dir", str(tmp_path / "ds"), "--model-id", "acme-ft"]
    )  # fmt: skip

    assert code == 0
    with make_guard(home, ring=ring, pii_gate=False) as guard:
        [model] = guard.models("acme")
        assert model.model_id == "acme-ft"
        assert guard.open_dataset(tmp_path / "ds").manifest.dataset_id == model.dataset
