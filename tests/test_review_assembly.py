"""Review: the Guard's constructor closes what it opened when wiring fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from kairo_guard import Guard, KeyRing
from kairo_guard.audit.log import AuditLog
from kairo_guard.core.exceptions import PolicyError
from kairo_guard.store.sqlite import SQLiteStore

_TWO_RULES_ONE_ID = """
[[rules]]
id = "user.deny-ops"
effect = "deny"
reason = "one"
data_classes = ["operator_public"]

[[rules]]
id = "user.deny-ops"
effect = "deny"
reason = "two"
data_classes = ["operator_public"]
"""


def test_when_the_policy_cannot_be_built_then_the_store_and_audit_log_are_closed(
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
    config = tmp_path / "kairo-guard.toml"
    config.write_text(_TWO_RULES_ONE_ID)
    with pytest.raises(PolicyError, match="share the id"):
        Guard(home=tmp_path / "state", key=KeyRing.generate(), config_file=config, env={})
    assert sorted(closed) == ["audit", "store"]


def test_when_the_policy_cannot_be_built_then_a_store_given_stays_open(tmp_path: Path) -> None:
    config = tmp_path / "kairo-guard.toml"
    config.write_text(_TWO_RULES_ONE_ID)
    store = SQLiteStore(tmp_path / "given.sqlite3")
    try:
        with pytest.raises(PolicyError):
            Guard(
                home=tmp_path / "state",
                key=KeyRing.generate(),
                config_file=config,
                env={},
                store=store,
            )
        assert store.list_agreements() == []  # still usable: the caller closes it
    finally:
        store.close()
