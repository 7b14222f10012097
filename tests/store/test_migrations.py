"""Versioned schemas on each backend: applied once at opening, never downgraded, and the
SQLite state directories of earlier builds (schema version 1) open with their rows."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from store_backends import open_url, pg_admin, schema_url

from kairo_guard import StoreError
from kairo_guard.store import postgres_schema
from kairo_guard.store import sqlite as sqlite_backend
from kairo_guard.store.migrations import schema_version
from kairo_guard.store.postgres import PostgresStore
from kairo_guard.store.sql_store import SQLStore
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore

_LATEST = {
    "sqlite": sqlite_backend.MIGRATIONS[-1].version,
    "postgresql": postgres_schema.MIGRATIONS[-1].version,
}


def _set_version(url: str, version: str) -> None:
    """Write a schema version into the store's ``meta`` behind its back."""
    sql = f"UPDATE meta SET value = '{version}' WHERE key = 'schema_version'"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None) as db:
            db.execute(sql)
        return
    with pg_admin() as admin:
        schema = url.rpartition("search_path%3D")[2]
        admin.execute(f"SET search_path = {schema}")
        admin.execute(sql)


def test_when_a_store_is_opened_then_it_is_at_the_last_version_and_stays_there(
    store_url: str,
) -> None:
    backend = store_url.partition(":")[0]
    first = open_url(store_url)
    first.add_fingerprints("acme", [1])
    first.close()
    again = open_url(store_url)  # a second opening migrates nothing and loses nothing
    try:
        assert schema_version(again.db) == _LATEST[backend]
        assert again.match_fingerprints([1]) == {1: frozenset({"acme"})}
        assert again.db.query("SELECT COUNT(*) FROM meta WHERE key = 'schema_version'") == [(1,)]
    finally:
        again.close()


def test_when_the_schema_is_newer_than_the_code_then_the_store_refuses_to_open(
    store_url: str,
) -> None:
    open_url(store_url).close()
    _set_version(store_url, "99")
    with pytest.raises(StoreError, match=r"version 99, newer than this kairo-guard"):
        open_url(store_url)


def test_when_the_recorded_version_is_not_a_number_then_the_store_refuses_to_open(
    store_url: str,
) -> None:
    open_url(store_url).close()
    _set_version(store_url, "two")
    with pytest.raises(StoreError, match="no schema version"):
        open_url(store_url)


# The version-1 schema of the builds before versioned migrations, as they wrote it.
_BUILT_BEFORE_VERSIONS = (
    sqlite_backend.MIGRATIONS[0].statements,
    "INSERT OR IGNORE INTO meta VALUES ('schema_version', '1')",
)


def test_when_a_sqlite_store_of_version_1_is_opened_then_it_keeps_its_rows_and_migrates(
    tmp_path: Path,
) -> None:
    path = tmp_path / DB_FILE_NAME
    with sqlite3.connect(path, isolation_level=None) as db:
        for statement in _BUILT_BEFORE_VERSIONS[0]:
            db.execute(statement)
        db.execute(_BUILT_BEFORE_VERSIONS[1])
        agreement = ("agr_1", "acme", "fine-tune", 1.0, None, None, "")
        db.execute("INSERT INTO agreements VALUES (?, ?, ?, ?, ?, ?, ?)", agreement)
        db.execute("INSERT INTO fingerprints VALUES (7, 'acme')")
    assert "audit_anchor" not in _tables(path)
    store = SQLiteStore(path)
    try:
        assert [a.id for a in store.list_agreements("acme")] == ["agr_1"]
        assert store.fingerprints_since(0)[0] == [7]
        assert schema_version(store.db) == _LATEST["sqlite"]
        assert "audit_anchor" in _tables(path)
    finally:
        store.close()


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_when_replicas_open_a_fresh_postgres_schema_at_once_then_it_is_migrated_once(
    pg_schema: str,
) -> None:
    # Plain CREATE statements: a migration that two openers both ran would fail one of
    # them. The advisory lock makes the later openers wait and find the schema current.
    url = schema_url(pg_schema)
    openers = 4
    start = threading.Barrier(openers)
    opened: list[SQLStore] = []
    failed: list[BaseException] = []

    def open_one() -> None:
        start.wait()
        try:
            opened.append(PostgresStore(url))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert failed == []
        assert len(opened) == openers
        opened[0].add_fingerprints("acme", [5])
        assert all(s.match_fingerprints([5]) == {5: frozenset({"acme"})} for s in opened)
        assert schema_version(opened[-1].db) == _LATEST["postgresql"]
    finally:
        for store in opened:
            store.close()
