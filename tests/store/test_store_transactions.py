"""SQLiteStore write transactions: all or nothing, and only StoreError escapes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kairo_guard import StoreError
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore


def test_an_error_inside_a_write_rolls_it_all_back_and_the_store_goes_on(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / DB_FILE_NAME)

    def half_way() -> None:
        with store.db.write() as db:
            db.execute("INSERT INTO fingerprints VALUES (?, ?)", (1, "acme"))
            raise RuntimeError("the caller failed half way")

    with pytest.raises(RuntimeError):
        half_way()
    assert store.match_fingerprints([1]) == {}
    store.add_fingerprints("acme", [1])
    assert store.match_fingerprints([1]) == {1: frozenset({"acme"})}


def test_a_locked_database_is_a_store_error_and_nothing_is_half_written(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / DB_FILE_NAME)
    store.db.connection.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(tmp_path / DB_FILE_NAME, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            store.add_fingerprints("acme", [1, 2])
        with pytest.raises(StoreError, match="locked"):
            store.sweep_provenance(0.0, dry_run=False)
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.add_fingerprints("acme", [1, 2])
    assert set(store.match_fingerprints([1, 2])) == {1, 2}
