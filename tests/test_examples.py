"""The example scripts run as users would run them, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from kg_testing import make_guard, sealed_record

from kairo_guard import Guard, KeyRing

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _write(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def _setup(
    tmp_path: Path,
) -> tuple[dict[str, str], list[dict[str, object]], list[dict[str, object]], Guard]:
    ring = KeyRing.generate()
    home = tmp_path / "state"
    env = {"KAIRO_GUARD_HOME": str(home), "KAIRO_GUARD_KEY": ring.to_env_value()}
    guard = make_guard(home, ring=ring)
    operator = [
        sealed_record(
            guard, {"features": [i, i * 2], "route": "small"}, data_class="operator_public"
        )
        for i in range(3)
    ]
    customer = [guard.label_record({"text": "Acme plan: hire 12 engineers"}, tenant="acme")]
    return env, operator, customer, guard


def test_shared_router_example_blocks_customer_content_and_writes_nothing(tmp_path: Path) -> None:
    env, operator, customer, guard = _setup(tmp_path)
    guard.close()
    data = _write(tmp_path / "in.jsonl", [*operator, *customer])
    out = tmp_path / "router.jsonl"
    result = _run("train_shared_router.py", env, "--input", str(data), "--out", str(out))
    assert result.returncode == 1, result.stderr
    assert "class.customer-content-shared" in result.stderr
    assert not out.exists()


def test_shared_router_example_filter_mode_keeps_operator_rows(tmp_path: Path) -> None:
    env, operator, customer, guard = _setup(tmp_path)
    guard.close()
    data = _write(tmp_path / "in.jsonl", [operator[0], *customer, *operator[1:]])
    out = tmp_path / "router.jsonl"
    result = _run(
        "train_shared_router.py", env, "--input", str(data), "--out", str(out), "--mode", "filter"
    )
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert rows == [{"features": [i, i * 2], "label": "small"} for i in range(3)]


def test_finetune_example_passes_under_agreement_only(tmp_path: Path) -> None:
    env, _, customer, guard = _setup(tmp_path)
    data = _write(tmp_path / "acme.jsonl", customer)
    out = tmp_path / "ft.jsonl"
    args = ("--tenant", "acme", "--input", str(data), "--out", str(out))
    guard.close()
    without = _run("finetune_tenant.py", env, *args)
    assert without.returncode == 1
    assert "agreement.inactive" in without.stderr

    guard = make_guard(
        Path(env["KAIRO_GUARD_HOME"]), ring=KeyRing.from_env_value(env["KAIRO_GUARD_KEY"])
    )
    guard.grant_agreement("acme")
    guard.close()
    with_agreement = _run("finetune_tenant.py", env, *args)
    assert with_agreement.returncode == 0, with_agreement.stderr
    assert orjson.loads(out.read_bytes()) == {
        "prompt": "Acme plan",
        "completion": "hire 12 engineers",
    }

    other = _run(
        "finetune_tenant.py", env, "--tenant", "globex", "--input", str(data), "--out", str(out)
    )
    assert other.returncode == 1


def test_ingestion_service_stores_sealed_documents_and_outputs_per_tenant(tmp_path: Path) -> None:
    import sys

    import httpx

    sys.path.insert(0, str(EXAMPLES))
    try:
        from ingestion_service import create_app
    finally:
        sys.path.remove(str(EXAMPLES))
    from kg_testing import running_server

    from kairo_guard.ingest.apikeys import new_api_key

    with make_guard(tmp_path / "state") as guard:
        keys = {t: new_api_key(guard.store, t) for t in ("acme", "globex")}
        with running_server(create_app(guard, tmp_path / "data")) as url:
            acme = {"authorization": f"Bearer {keys['acme']}"}
            globex = {"authorization": f"Bearer {keys['globex']}"}
            created = httpx.post(
                f"{url}/documents", json={"title": "plan", "text": "Hire 12. Expand."}, headers=acme
            )
            assert created.status_code == 201
            doc_id = created.json()["id"]
            uploaded = httpx.post(
                f"{url}/documents", files={"file": ("memo.txt", b"Globex memo.")}, headers=globex
            )
            assert uploaded.status_code == 201
            ran = httpx.post(f"{url}/agent/run", json={"document_id": doc_id}, headers=acme)
            assert ran.status_code == 201
            assert ran.json()["output"] == "Hire 12. (3 words)"
            # globex cannot see or use acme's document
            assert httpx.get(f"{url}/documents", headers=globex).json()[0]["title"] == "memo.txt"
            stolen = httpx.post(f"{url}/agent/run", json={"document_id": doc_id}, headers=globex)
            assert stolen.status_code == 404
            assert httpx.post(f"{url}/train/examples", json={}, headers=acme).status_code == 403
            assert httpx.get(f"{url}/healthz").status_code == 200
        stored = [
            orjson.loads(line)
            for name in ("documents", "agent_outputs")
            for line in (tmp_path / "data" / "acme" / f"{name}.jsonl").read_bytes().splitlines()
        ]
        guard.grant_agreement("acme")
        fine_tune = guard.check(stored, sink=guard.resolve_sink("ft", kind="tenant-fine-tune:acme"))
        assert (fine_tune.total, fine_tune.allowed) == (2, 2)
        shared = guard.check(stored, sink=guard.resolve_sink("s", kind="shared-training"))
        assert shared.blocked == 2


def test_make_demo_story_with_the_service_exits_0(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kairo_guard.cli.main",
            "demo",
            "--service",
            str(EXAMPLES / "ingestion_service.py"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "POST /train/examples (a shared training route): 403" in result.stdout
    assert "'X-Tenant-Id: acme' and no key: 401" in result.stdout
    assert "demo finished" in result.stdout


@pytest.mark.usefixtures("ray_turn")  # one Ray cluster at a time under pytest-xdist
def test_ray_example_fails_the_job_on_a_laundered_record_then_writes_the_rest(
    tmp_path: Path,
) -> None:
    ring = KeyRing.generate()
    home = tmp_path / "state"
    make_guard(home, ring=ring).close()  # with a vetting key, as keys init leaves it
    env = {"KAIRO_GUARD_HOME": str(home), "KAIRO_GUARD_KEY": ring.to_env_value()}
    out = tmp_path / "shared.parquet"
    result = _run(
        "ray_shared_prep.py", env, "--mb", "1", "--workdir", str(tmp_path / "w"), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "enforce: job failed as it should" in result.stdout
    assert "'fingerprint.tenant-content': 1" in result.stdout
    assert "laundered record kept out: True" in result.stdout


def _vetting_env(tmp_path: Path) -> tuple[dict[str, str], Guard]:
    ring = KeyRing.generate()
    home = tmp_path / "state"
    guard = make_guard(home, ring=ring)  # with a vetting key, as keys init leaves it
    return {"KAIRO_GUARD_HOME": str(home), "KAIRO_GUARD_KEY": ring.to_env_value()}, guard


def test_hf_torch_fine_tune_example_trains_on_the_tenants_records_only(tmp_path: Path) -> None:
    env, guard = _vetting_env(tmp_path)
    with guard:
        guard.grant_agreement("acme", reference="ft-example")
    result = _run("finetune_hf_torch.py", env, "--tenant", "acme", "--epochs", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "kept 6 of 7 records" in result.stdout
    assert "epoch 2: loss" in result.stdout
    assert "shared-training: refused" in result.stdout


def test_hf_torch_fine_tune_example_stops_without_an_agreement(tmp_path: Path) -> None:
    env, guard = _vetting_env(tmp_path)
    guard.close()
    result = _run("finetune_hf_torch.py", env, "--tenant", "acme", "--workers", "0")
    assert result.returncode == 1
    assert "is its agreement active?" in result.stderr
    assert "epoch" not in result.stdout


def test_shared_prep_example_is_blocked_then_writes_the_filtered_set(tmp_path: Path) -> None:
    env, guard = _vetting_env(tmp_path)
    guard.close()
    out = tmp_path / "shared"
    result = _run("shared_prep_datasets.py", env, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "save_to_disk refused" in result.stdout
    assert "written: False" in result.stdout
    assert "filtered 2 customer records; wrote 4 records" in result.stdout
    assert out.is_dir()
