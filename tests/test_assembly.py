"""The Guard's constructor closes what it opened when a later part cannot be built; the
state store is the one ``KAIRO_GUARD_DB_URL`` names."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from store_backends import fresh_schema, schema_url

from kairo_guard import Guard, KeyRing, assembly
from kairo_guard.audit.log import AuditLog
from kairo_guard.config import load_settings
from kairo_guard.core.exceptions import ConfigError
from kairo_guard.store.postgres import PostgresStore
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


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_when_the_db_url_names_postgresql_then_the_store_is_postgresql(
    tmp_path: Path, scheme: str
) -> None:
    with fresh_schema() as schema:
        url = schema_url(schema).replace("postgresql:", f"{scheme}:", 1)
        store = assembly.open_store(load_settings(home=tmp_path, env={"KAIRO_GUARD_DB_URL": url}))
        try:
            assert isinstance(store, PostgresStore)
        finally:
            store.close()
    assert not list(tmp_path.iterdir())  # no SQLite file beside it


def test_when_the_db_url_names_sqlite_then_the_store_is_that_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}"
    store = assembly.open_store(load_settings(home=tmp_path, env={"KAIRO_GUARD_DB_URL": url}))
    try:
        assert isinstance(store, SQLiteStore)
        assert (tmp_path / "elsewhere.sqlite3").exists()
    finally:
        store.close()


def test_when_the_db_url_names_another_database_then_it_is_a_config_error_without_secrets(
    tmp_path: Path,
) -> None:
    settings = load_settings(home=tmp_path, env={"KAIRO_GUARD_DB_URL": "mysql://kg:s3cret@db/x"})
    with pytest.raises(ConfigError, match="unsupported KAIRO_GUARD_DB_URL scheme 'mysql'") as err:
        assembly.open_store(settings)
    assert "s3cret" not in str(err.value)
    assert "postgresql://" in str(err.value)


def test_when_psycopg_is_not_installed_then_a_postgresql_url_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "kairo_guard.store.postgres_db", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'kairo-guard\[postgres\]'"):
        PostgresStore("postgresql://postgres@127.0.0.1:5432/test")
