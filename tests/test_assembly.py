"""The Guard's constructor closes what it opened when a later part cannot be built."""

from __future__ import annotations

from pathlib import Path

import pytest

from kairo_guard import Guard, KeyRing, assembly
from kairo_guard.audit.log import AuditLog
from kairo_guard.core.exceptions import ConfigError
from kairo_guard.store.sqlite import SQLiteStore


def _unbuildable(*args: object, **kwargs: object) -> None:
    raise ConfigError("a part cannot be built")


def test_when_a_part_cannot_be_built_then_the_store_and_audit_log_are_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    store_close, audit_close = SQLiteStore.close, AuditLog.close

    def spy_store(self: SQLiteStore) -> None:
        closed.append("store")
        store_close(self)

    def spy_audit(self: AuditLog) -> None:
        closed.append("audit")
        audit_close(self)

    monkeypatch.setattr(SQLiteStore, "close", spy_store)
    monkeypatch.setattr(AuditLog, "close", spy_audit)
    monkeypatch.setattr(assembly, "fingerprint_index", _unbuildable)
    with pytest.raises(ConfigError, match="cannot be built"):
        Guard(home=tmp_path / "state", key=KeyRing.generate(), env={})
    assert sorted(closed) == ["audit", "store"]


def test_when_a_part_cannot_be_built_then_a_store_given_stays_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(assembly, "fingerprint_index", _unbuildable)
    store = SQLiteStore(tmp_path / "given.sqlite3")
    try:
        with pytest.raises(ConfigError):
            Guard(home=tmp_path / "state", key=KeyRing.generate(), env={}, store=store)
        assert store.list_agreements() == []  # still usable: the caller closes it
    finally:
        store.close()
