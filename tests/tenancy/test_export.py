"""Export of one tenant's data: every section filled, nothing of another tenant in it."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kg_testing import make_guard
from tenant_data_support import ERASED, KEPT, Clock, TenantState, populate

from kairo_guard import Guard, KeyRing
from kairo_guard.tenancy.export import SECTIONS, write_csv, write_json

ME, OTHER = ERASED, KEPT


@pytest.fixture
def state(tmp_path: Path, ring: KeyRing) -> Iterator[tuple[Guard, dict[str, TenantState]]]:
    with make_guard(tmp_path / "state", ring=ring, pii_gate=False, clock=Clock()) as guard:
        tenants = {
            ME: populate(guard, ME, tmp_path, "a"),
            OTHER: populate(guard, OTHER, tmp_path, "b"),
        }
        # one check that decides both tenants' records in the same audit batch
        mixed = [*tenants[ME].records, *tenants[OTHER].records]
        guard.check(mixed, sink=guard.resolve_sink("shared", kind="shared-training"))
        yield guard, tenants


def test_export_holds_every_section_of_the_tenant(
    state: tuple[Guard, dict[str, TenantState]], ring: KeyRing
) -> None:
    guard, tenants = state
    doc = guard.export_tenant(ME)
    assert doc["tenant"] == ME
    assert doc["pseudonym"] == ring.pseudonym(ME)
    sections = doc["sections"]
    assert tuple(sections) == SECTIONS
    mine = tenants[ME]
    digests = {guard.open_seal(r["_kairo"]).digest for r in mine.records}
    assert {row["digest"] for row in sections["provenance"]} == digests
    assert [a["reference"] for a in sections["agreements"]] == ["dpa-2031"]
    assert [d["id"] for d in sections["datasets"]] == [mine.dataset_id]
    assert [m["model_id"] for m in sections["models"]] == [mine.model_id]
    decisions = [e for e in sections["decisions"] if e["event"] == "decision"]
    # three records each: the dataset builder, its fine-tune sink, the shared sink
    assert len(decisions) == 9
    assert {d["digest"] for d in decisions} == digests
    events = {e["event"] for e in sections["decisions"]}
    assert {"seal", "fingerprints.index", "agreement.grant", "retention.set"} <= events


def test_export_holds_nothing_of_another_tenant(
    state: tuple[Guard, dict[str, TenantState]], ring: KeyRing
) -> None:
    guard, tenants = state
    text = write_json(guard.export_tenant(ME))
    other = tenants[OTHER]
    forbidden = [
        OTHER,
        ring.pseudonym(OTHER),
        other.dataset_id,
        other.model_id,
        *(guard.open_seal(r["_kairo"]).digest for r in other.records),
    ]
    assert [f for f in forbidden if f.encode() in text] == []


def test_csv_export_writes_one_file_per_section(
    state: tuple[Guard, dict[str, TenantState]], tmp_path: Path
) -> None:
    guard, _ = state
    doc = guard.export_tenant(ME)
    paths = write_csv(doc, tmp_path / "out")
    assert [p.name for p in paths] == [f"{s}.csv" for s in SECTIONS]
    for section, path in zip(SECTIONS, paths, strict=True):
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == len(doc["sections"][section])
    with (tmp_path / "out" / "provenance.csv").open(newline="") as fh:
        first = next(csv.DictReader(fh))
    assert first["digest"] == doc["sections"]["provenance"][0]["digest"]
    with (tmp_path / "out" / "decisions.csv").open(newline="") as fh:
        checks = [r for r in csv.DictReader(fh) if r["event"] == "check"]
    assert orjson.loads(checks[0]["by_rule"])  # nested values are JSON text


def test_export_of_a_tenant_without_data_is_empty(
    state: tuple[Guard, dict[str, TenantState]],
) -> None:
    guard, _ = state
    doc = guard.export_tenant("nobody")
    assert all(rows == [] for rows in doc["sections"].values())


def test_export_after_erasure_keeps_only_pseudonymous_decisions(
    state: tuple[Guard, dict[str, TenantState]],
) -> None:
    guard, _ = state
    guard.erase_tenant(ME)
    sections = guard.export_tenant(ME)["sections"]
    assert sections["provenance"] == sections["agreements"] == sections["datasets"] == []
    assert [m["status"] for m in sections["models"]] == ["pending_deletion"]
    assert any(e["event"] == "tenant.erase" for e in sections["decisions"])


def test_export_refuses_an_invalid_tenant(guard: Guard) -> None:
    with pytest.raises(ValueError, match="invalid tenant id"):
        guard.export_tenant("../etc")
