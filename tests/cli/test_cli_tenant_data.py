"""``kairo-guard retention set|show|sweep``, ``erase`` and ``export``: output and exit codes."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from kg_testing import make_guard
from tenant_data_support import DAY, ERASED, KEPT, TenantState, populate

from kairo_guard import Guard, KeyRing
from kairo_guard.core.types import SEAL_FIELD
from kairo_guard.tenancy.erasure import ErasureReceipt


def _open(home: Path, ring: KeyRing, **kwargs: Any) -> Guard:
    return make_guard(home, ring=ring, pii_gate=False, **kwargs)


@pytest.fixture
def tenants(home: Path, ring: KeyRing, tmp_path: Path) -> dict[str, TenantState]:
    with _open(home, ring) as guard:
        return {
            ERASED: populate(guard, ERASED, tmp_path, "a"),
            KEPT: populate(guard, KEPT, tmp_path, "b"),
        }


def test_retention_set_and_show(kg: Any, home: Path, ring: KeyRing) -> None:
    assert kg("retention", "set", "--tenant", "acme", "--class", "agent_run", "180d").code == 0
    shown = kg("retention", "show")
    assert shown.code == 0
    assert "default  agent_run  90d" in shown.out
    assert "acme  agent_run  180d" in shown.out
    with _open(home, ring) as guard:
        label = guard.open_seal(guard.seal({"a": 1}, tenant="acme", source="agent-run:x"))
    assert label.expires_at is not None
    assert label.expires_at - label.created_at == 180 * DAY
    assert kg("retention", "set", "--tenant", "acme", "--class", "agent_run", "--unset").code == 0
    assert "acme" not in kg("retention", "show").out


@pytest.mark.parametrize(
    "args",
    [
        ["--tenant", "acme", "--class", "agent_run", "ninety days"],
        ["--tenant", "acme", "--class", "operator_public", "30d"],
        ["--tenant", "acme", "--class", "agent_run"],
        ["--tenant", "acme", "--class", "agent_run", "30d", "--unset"],
        ["--tenant", "bad tenant", "--class", "agent_run", "30d"],
    ],
    ids=["bad-duration", "bad-class", "no-duration", "both", "bad-tenant"],
)
def test_retention_set_with_bad_input_exits_2(kg: Any, args: list[str]) -> None:
    run = kg("retention", "set", *args)
    assert run.code == 2
    assert run.err.startswith("error:")


def test_retention_sweep_dry_run_then_for_real_with_a_json_report(
    kg: Any, home: Path, ring: KeyRing, tmp_path: Path
) -> None:
    old = time.time() - 100 * DAY
    with _open(home, ring) as guard:
        for source in ("agent-run:chat", "agent-run:chat", "upload"):
            seal = guard.seal({"s": source}, tenant="acme", source=source, created_at=old)
            guard.tenancy.retention.record_provenance(seal)
    report_path = tmp_path / "sweep.json"
    dry = kg("retention", "sweep", "--dry-run", "--report", report_path)
    assert dry.code == 0
    assert "would delete 0 dataset record(s) in 0 dataset(s) and 2 provenance row(s)" in dry.out
    doc = orjson.loads(report_path.read_bytes())
    assert doc["dry_run"] is True
    assert doc["removed"]["provenance"] == {ring.pseudonym("acme"): {"customer_content": 2}}
    assert b"acme" not in report_path.read_bytes()
    real = kg("retention", "sweep")
    assert real.code == 0
    assert "deleted 0 dataset record(s) in 0 dataset(s) and 2 provenance row(s)" in real.out
    assert (
        "deleted 0 dataset record(s) in 0 dataset(s) and 0 provenance"
        in kg("retention", "sweep").out
    )


def test_erase_needs_confirmation(kg: Any, tenants: dict[str, TenantState]) -> None:
    run = kg("erase", "--tenant", ERASED)  # stdin is not a terminal under pytest
    assert run.code == 2
    assert "--yes" in run.err


def test_erase_with_yes_writes_the_receipt_and_audit_still_verifies(
    kg: Any, tenants: dict[str, TenantState], home: Path, ring: KeyRing, tmp_path: Path
) -> None:
    copy = tmp_path / "receipt.json"
    run = kg("erase", "--tenant", ERASED, "--yes", "--receipt", copy)
    assert run.code == 0, run.err
    assert f"erased {ERASED} (pseudonym {ring.pseudonym(ERASED)})" in run.out
    assert "1 model(s) marked for deletion" in run.out
    assert ErasureReceipt.load(copy).verify(ring)
    assert kg("audit", "verify").code == 0
    with _open(home, ring) as guard:
        sink = guard.resolve_sink("ft", kind=f"tenant-fine-tune:{ERASED}")
        assert guard.check(tenants[ERASED].records, sink=sink).allowed == 0


def test_erase_of_an_invalid_tenant_exits_2(kg: Any) -> None:
    run = kg("erase", "--tenant", "../x", "--yes")
    assert run.code == 2
    assert "invalid tenant id" in run.err


def test_export_json_to_stdout_and_file(
    kg: Any, tenants: dict[str, TenantState], tmp_path: Path
) -> None:
    run = kg("export", "--tenant", ERASED)
    assert run.code == 0
    doc = orjson.loads(run.out)
    assert doc["tenant"] == ERASED
    assert len(doc["sections"]["provenance"]) == 3
    assert KEPT not in run.out
    out = tmp_path / "export.json"
    assert kg("export", "--tenant", ERASED, "--format", "json", "--out", out).code == 0
    assert orjson.loads(out.read_bytes())["sections"] == doc["sections"]


def test_export_csv_needs_a_directory_and_writes_one_file_per_section(
    kg: Any, tenants: dict[str, TenantState], tmp_path: Path
) -> None:
    assert kg("export", "--tenant", ERASED, "--format", "csv").code == 2
    out = tmp_path / "csv"
    run = kg("export", "--tenant", ERASED, "--format", "csv", "--out", out)
    assert run.code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "agreements.csv",
        "datasets.csv",
        "decisions.csv",
        "models.csv",
        "provenance.csv",
    ]
    with (out / "provenance.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    seals = [r[SEAL_FIELD] for r in tenants[ERASED].records]
    assert len(rows) == len(seals)


def test_export_fails_with_1_when_the_audit_log_was_edited(
    kg: Any, tenants: dict[str, TenantState], home: Path, ring: KeyRing
) -> None:
    log = home / "audit" / "audit.jsonl"
    pseudonym = ring.pseudonym(ERASED)
    lines = log.read_bytes().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if pseudonym.encode() in line)
    lines[index] = lines[index].replace(b'"event":"', b'"event":"x', 1)
    log.write_bytes(b"".join(lines))
    run = kg("export", "--tenant", ERASED)
    assert run.code == 1
    assert "audit" in run.err
