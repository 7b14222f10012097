"""The audit log's anchor: each signed head also recorded in the store (real SQLite) and
as OpenTelemetry gauges, only ever forward; a writer refuses a log behind it."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from kg_testing import make_guard
from otel_support import Sdk

from kairo_guard import KeyRing
from kairo_guard.audit.log import verify_audit
from kairo_guard.config.settings import state_directory_id
from kairo_guard.core.anchor import Anchor
from kairo_guard.core.exceptions import AuditIntegrityError, StoreError
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD
from kairo_guard.otel import names
from kairo_guard.store.sqlite import SQLiteStore


def _head(home: Path) -> dict[str, object]:
    head: dict[str, object] = orjson.loads((home / "audit" / "audit.head").read_bytes())
    return head


def test_each_head_is_anchored_in_the_store_and_reported_as_gauges(tmp_path: Path) -> None:
    sdk, ring = Sdk(), KeyRing.generate()
    with make_guard(
        tmp_path / "s", ring=ring, pii_gate=False, meter_provider=sdk.meter_provider
    ) as g:
        for n in range(3):
            g.audit.append({"event": "test", "n": n})
        g.audit.flush()
        log_id = g.settings.audit_log_id
        anchored = g.store.get_audit_anchor(log_id)
        head = _head(tmp_path / "s")
        assert anchored is not None
        assert (anchored.count, anchored.hash) == (head["count"], head["hash"])
        assert anchored.end == (tmp_path / "s" / "audit" / "audit.jsonl").stat().st_size
        [(attrs, entries)] = sdk.points(names.METRIC_AUDIT_ENTRIES)
        [(_, bits)] = sdk.points(names.METRIC_AUDIT_HASH)
    assert attrs == {names.ATTR_AUDIT_LOG: log_id}
    assert entries.value == head["count"]
    assert bits.value == int(str(head["hash"])[:13], 16)


def test_heads_the_store_cannot_record_are_counted_and_the_next_one_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk, ring = Sdk(), KeyRing.generate()
    with make_guard(
        tmp_path / "s", ring=ring, pii_gate=False, meter_provider=sdk.meter_provider
    ) as g:
        log_id = g.settings.audit_log_id
        g.audit.flush()  # what opening the guard wrote
        real = g.store.advance_audit_anchor

        def unreachable(log: str, anchor: Anchor) -> None:
            raise StoreError("connection refused")

        monkeypatch.setattr(g.store, "advance_audit_anchor", unreachable)
        for n in range(2):  # two heads, neither anchored; the log itself is written
            g.audit.append({"event": "test", "n": n})
            g.audit.flush()
        [(attrs, failures)] = sdk.points(names.METRIC_ANCHOR_FAILURES)
        assert attrs == {names.ATTR_AUDIT_LOG: log_id}
        missed = failures.value
        assert missed >= 2  # one a head (the flusher may have written one more)
        stale = g.store.get_audit_anchor(log_id)
        assert stale is None or stale.count < int(str(_head(tmp_path / "s")["count"]))
        monkeypatch.setattr(g.store, "advance_audit_anchor", real)
        g.audit.append({"event": "test", "n": 2})
        g.audit.flush()
        anchored = g.store.get_audit_anchor(log_id)
        assert anchored is not None
        assert anchored.count == _head(tmp_path / "s")["count"]
        [(_, failures)] = sdk.points(names.METRIC_ANCHOR_FAILURES)
        assert failures.value == missed  # no failure once the store is back


def test_the_anchor_only_moves_forward(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite3")
    try:
        store.advance_audit_anchor("a", Anchor(5, "h5", 500, 1.0))
        store.advance_audit_anchor("a", Anchor(3, "h3", 300, 2.0))  # a late, older head
        store.advance_audit_anchor("b", Anchor(1, "h1", 100, 3.0))
        assert store.get_audit_anchor("a") == Anchor(5, "h5", 500, 1.0)
        store.advance_audit_anchor("a", Anchor(8, "h8", 800, 4.0))
        assert store.get_audit_anchor("a") == Anchor(8, "h8", 800, 4.0)
        assert store.get_audit_anchor("b") == Anchor(1, "h1", 100, 3.0)
        assert store.get_audit_anchor("c") is None
    finally:
        store.close()


@pytest.mark.sqlite_only
def test_when_the_log_is_rolled_back_then_the_guard_does_not_open(tmp_path: Path) -> None:
    ring, home = KeyRing.generate(), tmp_path / "s"
    with make_guard(home, ring=ring, pii_gate=False) as g:
        g.audit.append({"event": "first"})
        g.audit.flush()
        shutil.copytree(home / "audit", tmp_path / "older")
        g.audit.append({"event": "second"})
    shutil.rmtree(home / "audit")
    shutil.copytree(tmp_path / "older", home / "audit")
    keys = ring.subkeys(PURPOSE_AUDIT_HEAD)
    assert verify_audit(home / "audit", keys).ok  # the pair alone: consistent

    with pytest.raises(AuditIntegrityError, match="rolled back or deleted"):
        make_guard(home, ring=ring, pii_gate=False)

    store = SQLiteStore(home / "state.sqlite3")
    try:
        anchor = store.get_audit_anchor(state_directory_id(home))
    finally:
        store.close()
    result = verify_audit(home / "audit", keys, anchor)
    assert not result.ok
    assert result.problem is not None
    assert "rolled back or deleted" in result.problem


def test_state_directories_sharing_a_store_keep_their_own_anchors(tmp_path: Path) -> None:
    ring, db = KeyRing.generate(), tmp_path / "shared.sqlite3"
    env = {"KAIRO_GUARD_DB_URL": f"sqlite:///{db}"}
    with make_guard(tmp_path / "a", ring=ring, pii_gate=False, env=env) as a:
        a.audit.append({"event": "a"})
    # by default each directory is named after its path: b's log is not a's
    with make_guard(tmp_path / "b", ring=ring, pii_gate=False, env=env) as b:
        b.audit.append({"event": "b"})
        b.audit.flush()
        anchors = {d: b.store.get_audit_anchor(state_directory_id(tmp_path / d)) for d in "ab"}
    assert all(a is not None and a.count >= 1 for a in anchors.values())
    # two directories given the same name: the second refuses (it would look rolled back)
    same = {**env, "KAIRO_GUARD_AUDIT_LOG_ID": "replica"}
    with make_guard(tmp_path / "c", ring=ring, pii_gate=False, env=same) as c:
        c.audit.append({"event": "c"})
    with pytest.raises(AuditIntegrityError, match="same KAIRO_GUARD_AUDIT_LOG_ID"):
        make_guard(tmp_path / "d", ring=ring, pii_gate=False, env=same)
