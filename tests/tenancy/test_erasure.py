"""Erasure of a tenant: no trace left in the store, its seals and models refused, the audit
log intact, the other tenants untouched, a signed receipt."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from kg_testing import make_guard, running_server, sealed_record
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from tenant_data_support import ERASED, KEPT, Clock, TenantState, populate

from kairo_guard import Guard, KeyRing, StoreError, verify_audit
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD
from kairo_guard.guard import AUDIT_DIR_NAME
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore
from kairo_guard.tenancy.erasure import ErasureReceipt

SINK_KINDS = [
    "shared-training",
    "shared-fine-tune",
    "shared-eval",
    f"tenant-fine-tune:{ERASED}",
    f"tenant-fine-tune:{KEPT}",
]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(
    tmp_path: Path, ring: KeyRing, clock: Clock
) -> Iterator[tuple[Guard, dict[str, TenantState]]]:
    with make_guard(tmp_path / "state", ring=ring, pii_gate=False, clock=clock) as guard:
        tenants = {
            ERASED: populate(guard, ERASED, tmp_path, "a"),
            KEPT: populate(guard, KEPT, tmp_path, "b"),
        }
        clock.advance(1)
        yield guard, tenants


def _text_cells_holding(db: Path, needle: str) -> list[str]:
    """Every (table, column) of the SQLite file where some value contains ``needle``."""
    found = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert {
            "fingerprints",
            "agreements",
            "api_keys",
            "provenance",
            "datasets",
            "models",
        } <= set(tables)
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info('{table}')")]
            for column in columns:
                hits = conn.execute(
                    f'SELECT COUNT(*) FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?) > 0',
                    (needle,),
                ).fetchone()[0]
                if hits:
                    found.append(f"{table}.{column}")
    return found


@pytest.mark.sqlite_only
def test_when_tenant_erased_then_no_table_of_the_store_holds_its_id(
    state: tuple[Guard, dict[str, TenantState]],
) -> None:
    guard, _ = state
    db = guard.settings.home / DB_FILE_NAME
    assert _text_cells_holding(db, ERASED)  # the search finds the tenant before erasure
    guard.erase_tenant(ERASED)
    assert _text_cells_holding(db, ERASED) == []
    assert _text_cells_holding(db, KEPT)  # the other tenant is still there


@pytest.mark.sqlite_only
def test_when_tenant_erased_then_its_id_is_nowhere_in_the_state_files(
    state: tuple[Guard, dict[str, TenantState]],
) -> None:
    guard, tenants = state
    # a source that names its tenant reaches the audit log with the pseudonym instead
    guard.seal({"n": 1}, tenant=ERASED, source=f"upload:{ERASED}")
    guard.audit.flush()
    before = [p for p in guard.settings.home.rglob("*") if p.is_file()]
    assert any(ERASED.encode() in p.read_bytes() for p in before)  # the search can find it
    receipt = guard.erase_tenant(ERASED)
    guard.audit.flush()
    files = [p for p in guard.settings.home.rglob("*") if p.is_file()]
    assert receipt.path in files
    # deleted pages are overwritten and the WAL checkpointed: not even free pages keep it
    holding = [p.name for p in files if ERASED.encode() in p.read_bytes()]
    assert holding == []
    assert not tenants[ERASED].dataset_path.exists()
    assert tenants[KEPT].dataset_path.exists()


@pytest.mark.sqlite_only
def test_when_rows_of_the_tenant_were_freed_before_its_erasure_then_no_trace_is_left(
    state: tuple[Guard, dict[str, TenantState]],
) -> None:
    guard, _ = state
    # bytes freed without being overwritten before the erasure (here: secure_delete off,
    # as SQLite builds without SQLITE_SECURE_DELETE have it, and a retention override
    # set, then removed) must not outlive it
    assert isinstance(guard.store, SQLiteStore)
    guard.store.db.query("PRAGMA secure_delete = OFF")
    guard.set_retention(ERASED, "customer_content", 3600)
    guard.set_retention(ERASED, "customer_content", None)
    guard.store.db.query("PRAGMA wal_checkpoint(TRUNCATE)")
    assert ERASED.encode() in (guard.settings.home / DB_FILE_NAME).read_bytes()
    guard.erase_tenant(ERASED)
    guard.audit.flush()
    files = [p for p in guard.settings.home.rglob("*") if p.is_file()]
    assert [p.name for p in files if ERASED.encode() in p.read_bytes()] == []
    assert guard.store.db.query("PRAGMA secure_delete") == [(0,)]  # as it was before


def test_when_tenant_erased_then_other_tenants_are_untouched(
    state: tuple[Guard, dict[str, TenantState]],
) -> None:
    guard, tenants = state
    before = guard.export_tenant(KEPT)["sections"]
    receipt = guard.erase_tenant(ERASED)
    after = guard.export_tenant(KEPT)["sections"]
    for section in ("provenance", "agreements", "datasets", "models"):
        assert after[section] == before[section]
    assert guard.tenancy.agreements.active(KEPT)
    assert guard.check_model_access(tenants[KEPT].model_id, KEPT)
    kept = guard.check(
        tenants[KEPT].records, sink=guard.resolve_sink("f", kind=f"tenant-fine-tune:{KEPT}")
    )
    assert kept.allowed == len(tenants[KEPT].records)
    assert receipt.removed == {
        "agreements": 1,
        "api_keys": 1,
        "datasets": 1,
        "fingerprints": receipt.removed["fingerprints"],
        "provenance": 3,
        "retention_overrides": 1,
    }
    assert receipt.removed["fingerprints"] > 0
    assert receipt.models_marked_for_deletion == 1


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_when_tenant_erased_then_its_old_seals_are_refused_at_every_sink(
    state: tuple[Guard, dict[str, TenantState]], kind: str
) -> None:
    guard, tenants = state
    guard.grant_agreement(ERASED)  # even a new agreement does not revive erased content
    guard.erase_tenant(ERASED)
    guard.grant_agreement(ERASED)
    report = guard.check(tenants[ERASED].records, sink=guard.resolve_sink("s", kind=kind))
    assert report.allowed == 0
    assert {v.rule for v in report.violations} == {"tenant.erased"}


def test_when_erased_tenant_returns_then_only_content_sealed_later_passes(
    state: tuple[Guard, dict[str, TenantState]], clock: Clock
) -> None:
    guard, tenants = state
    guard.erase_tenant(ERASED)
    clock.advance(1)
    guard.grant_agreement(ERASED)
    fresh = guard.label_record({"text": "a new document"}, tenant=ERASED)
    sink = guard.resolve_sink("ft", kind=f"tenant-fine-tune:{ERASED}")
    report = guard.check([*tenants[ERASED].records, fresh], sink=sink)
    assert [v.rule for v in report.violations] == ["tenant.erased"] * 3
    assert report.allowed == 1


def test_when_tenant_erased_then_its_model_is_denied(
    state: tuple[Guard, dict[str, TenantState]],
) -> None:
    guard, tenants = state
    assert guard.check_model_access(tenants[ERASED].model_id, ERASED)
    guard.erase_tenant(ERASED)
    assert not guard.check_model_access(tenants[ERASED].model_id, ERASED)
    assert not guard.check_model_access(tenants[ERASED].model_id, KEPT)


def test_when_tenant_erased_then_its_unsealed_text_is_still_blocked_at_shared_sinks(
    state: tuple[Guard, dict[str, TenantState]],
) -> None:
    guard, tenants = state
    text = {"text": tenants[ERASED].records[0]["text"]}
    sink = guard.resolve_sink("s", kind="shared-training")
    assert guard.check([text], sink=sink).violations[0].rule == "fingerprint.tenant-content"
    guard.erase_tenant(ERASED)
    after = guard.check([text], sink=sink)
    assert after.allowed == 0  # unknown provenance is customer content
    assert after.violations[0].rule != "fingerprint.tenant-content"  # the net forgot it


def test_when_tenant_erased_then_the_audit_log_verifies_and_records_the_receipt(
    state: tuple[Guard, dict[str, TenantState]], ring: KeyRing
) -> None:
    guard, _ = state
    receipt = guard.erase_tenant(ERASED)
    directory = guard.settings.home / AUDIT_DIR_NAME
    result = verify_audit(directory, ring.subkeys(PURPOSE_AUDIT_HEAD))
    assert result.ok, result.problem
    entries = [orjson.loads(line) for line in (directory / "audit.jsonl").read_bytes().splitlines()]
    erase = [e for e in entries if e.get("event") == "tenant.erase"]
    assert len(erase) == 1
    assert receipt.path is not None
    assert erase[0]["receipt_sha256"] == hashlib.sha256(receipt.path.read_bytes()).hexdigest()
    assert erase[0]["tenant"] == ring.pseudonym(ERASED)


def test_receipt_is_signed_and_names_the_pseudonym_only(
    state: tuple[Guard, dict[str, TenantState]], ring: KeyRing, tmp_path: Path
) -> None:
    guard, _ = state
    copy = tmp_path / "receipt.json"
    receipt = guard.erase_tenant(ERASED, receipt_path=copy)
    assert receipt.path is not None
    assert copy.read_bytes() == receipt.path.read_bytes()
    assert receipt.path.stat().st_mode & 0o777 == 0o600
    loaded = ErasureReceipt.load(copy)
    assert loaded.tenant == ring.pseudonym(ERASED)
    assert loaded.verify(ring)
    assert not loaded.verify(KeyRing.generate())
    doc = orjson.loads(copy.read_bytes())
    doc["removed"]["fingerprints"] = 0
    copy.write_bytes(orjson.dumps(doc))
    assert not ErasureReceipt.load(copy).verify(ring)


@pytest.mark.sqlite_only
def test_when_erased_tenants_cannot_be_read_then_tenant_records_block(guard: Guard) -> None:
    guard.grant_agreement("acme")
    record = guard.label_record({"t": "x"}, tenant="acme")
    sink = guard.resolve_sink("ft", kind="tenant-fine-tune:acme")
    assert guard.check([record], sink=sink).allowed == 1
    assert isinstance(guard.store, SQLiteStore)
    guard.store.db.query("DROP TABLE erased_tenants")  # a real store failure, not a double
    report = guard.check([record], sink=sink)
    assert report.violations[0].rule == "guard.error"
    operator = sealed_record(guard, {"t": "public"}, data_class="operator_public")
    assert guard.check([operator], sink=sink).allowed == 1  # no tenant: not affected


def test_when_erasure_fails_midway_then_no_receipt_and_seals_already_refused(
    state: tuple[Guard, dict[str, TenantState]], monkeypatch: pytest.MonkeyPatch
) -> None:
    guard, tenants = state

    def broken(tenant: str) -> dict[str, int]:
        raise StoreError("disk full")

    monkeypatch.setattr(guard.store, "erase_tenant", broken)
    with pytest.raises(StoreError):
        guard.erase_tenant(ERASED)
    assert not (guard.settings.home / "erasures").exists()
    sink = guard.resolve_sink("ft", kind=f"tenant-fine-tune:{ERASED}")
    assert guard.check(tenants[ERASED].records, sink=sink).allowed == 0
    monkeypatch.undo()
    guard.erase_tenant(ERASED)  # running it again finishes the job
    assert guard.agreements(ERASED) == []


def test_when_tenant_erased_then_its_api_key_no_longer_authenticates(
    state: tuple[Guard, dict[str, TenantState]],
) -> None:
    guard, tenants = state

    async def whoami(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = GuardMiddleware(Starlette(routes=[Route("/", whoami)]), guard=guard)
    headers = {"authorization": f"Bearer {tenants[ERASED].api_key}"}
    kept = {"authorization": f"Bearer {tenants[KEPT].api_key}"}
    with running_server(app) as url:  # one running service: no restart needed
        assert httpx.get(url, headers=headers).status_code == 200
        guard.erase_tenant(ERASED)
        assert httpx.get(url, headers=headers).status_code == 401
        assert httpx.get(url, headers=kept).status_code == 200


def test_erasing_an_invalid_tenant_id_is_refused(guard: Guard) -> None:
    with pytest.raises(ValueError, match="invalid tenant id"):
        guard.erase_tenant("acme; DROP TABLE")


def test_when_tenant_erased_then_operator_data_still_passes(
    state: tuple[Guard, dict[str, TenantState]],
) -> None:
    guard, _ = state
    guard.erase_tenant(ERASED)
    record = sealed_record(guard, {"t": "licensed text"}, data_class="operator_public")
    report = guard.check([record], sink=guard.resolve_sink("s", kind="shared-training"))
    assert report.allowed == 1
