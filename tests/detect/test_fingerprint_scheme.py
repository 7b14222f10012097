"""An index built under another fingerprint scheme makes the net blind: shared sinks,
vetting and filter exports refuse until it is rebuilt (fail closed)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from kg_testing import make_guard, sealed_record

from kairo_guard import ContentRefused, Guard, KeyRing
from kairo_guard.core.keys import PURPOSE_FILTER, PURPOSE_FINGERPRINT
from kairo_guard.detect.bloom import FilterError, FingerprintFilter
from kairo_guard.detect.fingerprint import SCHEME, SCHEME_RULE, keyed_scheme
from kairo_guard.store.sqlite import DB_FILE_NAME

DOC = (
    "Acme's plan for the spring: a second warehouse near the river, twelve new engineers "
    "for the logistics platform, and a supplier contract that stays confidential until "
    "the board signs it in May."
)


def _indexed_home(tmp_path: Path, ring: KeyRing) -> Path:
    home = tmp_path / "state"
    with make_guard(home, ring=ring, pii_gate=False) as guard:
        guard.index_content("acme", {"text": DOC})
    return home


def _set_recorded_scheme(home: Path, scheme: str | None) -> None:
    with sqlite3.connect(home / DB_FILE_NAME) as db:
        db.execute("DELETE FROM meta WHERE key = 'fingerprint_scheme'")
        if scheme is not None:
            db.execute("INSERT INTO meta VALUES ('fingerprint_scheme', ?)", (scheme,))


@pytest.mark.sqlite_only  # opens the state directory's SQLite file itself
def test_when_a_new_store_is_opened_then_it_records_the_current_scheme(
    tmp_path: Path, ring: KeyRing
) -> None:
    home = _indexed_home(tmp_path, ring)
    with sqlite3.connect(home / DB_FILE_NAME) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint_scheme'").fetchone()
    assert row == (_keyed(ring),)  # the scheme, bound to the ring's fingerprint key
    with make_guard(home, ring=ring, pii_gate=False) as guard:
        report = guard.check([{"text": DOC}], sink="shared-training")
        assert [v.rule for v in report.violations] == ["fingerprint.tenant-content"]


def _shared(home: Path) -> dict[str, str]:
    """Another state directory's environment on the store of ``home``."""
    return {"KAIRO_GUARD_DB_URL": f"sqlite:///{home / DB_FILE_NAME}",
            "KAIRO_GUARD_AUDIT_LOG_ID": "replica"}  # fmt: skip


def _keyed(ring: KeyRing) -> str:
    return keyed_scheme(ring.subkey(PURPOSE_FINGERPRINT, ring.pseudonym_key_id))


@pytest.mark.sqlite_only  # opens the state directory's SQLite file itself
def test_when_a_process_holds_another_key_ring_then_the_net_refuses_instead_of_passing(
    tmp_path: Path, ring: KeyRing
) -> None:
    home = _indexed_home(tmp_path, ring)
    stranger = KeyRing.generate()  # a replica on the same store, with the wrong ring
    with make_guard(
        tmp_path / "replica", ring=stranger, pii_gate=False, env=_shared(home)
    ) as guard:
        copied = sealed_record(guard, {"text": DOC}, data_class="operator_public")
        report = guard.check([copied], sink="shared-training")
        assert [v.rule for v in report.violations] == [SCHEME_RULE]  # not passed unseen
        assert "another key ring" in report.violations[0].reason
        with pytest.raises(ContentRefused) as refused:
            guard.seal_operator_data({"text": DOC}, source="wiki")
        assert refused.value.rule == SCHEME_RULE


@pytest.mark.sqlite_only  # opens the state directory's SQLite file itself
def test_a_store_recorded_before_the_key_was_named_is_bound_to_the_first_ring_after(
    tmp_path: Path, ring: KeyRing
) -> None:
    home = _indexed_home(tmp_path, ring)
    _set_recorded_scheme(home, SCHEME)  # as an earlier release recorded it
    with make_guard(home, ring=ring, pii_gate=False) as guard:
        report = guard.check([{"text": DOC}], sink="shared-training")
        assert [v.rule for v in report.violations] == ["fingerprint.tenant-content"]
    with sqlite3.connect(home / DB_FILE_NAME) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint_scheme'").fetchone()
    assert row == (_keyed(ring),)
    stranger = KeyRing.generate()
    with make_guard(
        tmp_path / "replica", ring=stranger, pii_gate=False, env=_shared(home)
    ) as guard:
        copied = sealed_record(guard, {"text": DOC}, data_class="operator_public")
        report = guard.check([copied], sink="shared-training")
        assert [v.rule for v in report.violations] == [SCHEME_RULE]


@pytest.mark.sqlite_only  # opens the state directory's SQLite file itself
@pytest.mark.parametrize("recorded", [None, "kg-winnow-k50-w40-nfkc-casefold"])
def test_when_the_index_was_built_under_another_scheme_then_shared_sinks_and_vetting_refuse(
    tmp_path: Path, ring: KeyRing, recorded: str | None
) -> None:
    home = _indexed_home(tmp_path, ring)
    _set_recorded_scheme(home, recorded)
    with make_guard(home, ring=ring, pii_gate=False) as guard:
        fact = {"text": "Water boils at 100 degrees."}
        public = sealed_record(guard, fact, data_class="operator_public")
        report = guard.check([public, {"text": "unlabeled"}], sink="shared-training")
        assert [v.rule for v in report.violations] == [SCHEME_RULE, "seal.missing"]
        assert "re-indexed" in report.violations[0].reason
        with pytest.raises(ContentRefused) as refused:
            guard.seal_operator_data(fact, source="wiki")
        assert refused.value.rule == SCHEME_RULE
        with pytest.raises(FilterError):
            guard.export_fingerprint_filter(tmp_path / "net.kgf")


@pytest.mark.sqlite_only  # opens the state directory's SQLite file itself
def test_when_the_index_is_stale_then_a_tenant_still_fine_tunes_on_its_own_content(
    tmp_path: Path, ring: KeyRing
) -> None:
    home = _indexed_home(tmp_path, ring)
    _set_recorded_scheme(home, None)
    with make_guard(home, ring=ring, pii_gate=False) as guard:
        guard.grant_agreement("acme")
        record = guard.label_record({"text": DOC}, tenant="acme")
        assert guard.check([record], sink="tenant-fine-tune:acme").ok


@pytest.mark.parametrize("scheme", [None, "kg-winnow-k50-w40-nfkc-casefold"])
def test_when_a_filter_was_made_under_another_scheme_then_it_is_not_loaded(
    tmp_path: Path, guard: Guard, scheme: str | None
) -> None:
    meta: dict[str, object] = {"min_shared": 3, "min_fraction": 0.5}
    if scheme is not None:
        meta["scheme"] = scheme
    old = FingerprintFilter.build([1, 2, 3], count=3, fp_rate=0.01, meta=meta)
    key = guard.keys.subkey(PURPOSE_FILTER, guard.keys.pseudonym_key_id)
    old.save(tmp_path / "old.kgf", key)
    with pytest.raises(FilterError, match="scheme"):
        guard.load_fingerprint_filter(tmp_path / "old.kgf")
    guard.index_content("acme", {"text": DOC})
    guard.export_fingerprint_filter(tmp_path / "new.kgf")
    assert guard.load_fingerprint_filter(tmp_path / "new.kgf").meta["scheme"] == SCHEME
