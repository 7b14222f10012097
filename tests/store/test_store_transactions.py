"""Write transactions on each backend: all or nothing, and only StoreError escapes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from store_backends import open_url

from kairo_guard import StoreError
from kairo_guard.store.sql_store import SQLStore
from kairo_guard.store.sqlite_db import SQLiteDatabase

_WAITED_TOO_LONG = {"sqlite": "locked", "postgresql": "statement timeout"}
"""What each backend says when another connection holds what a write needs too long."""


def test_an_error_inside_a_write_rolls_it_all_back_and_the_store_goes_on(
    store: SQLStore,
) -> None:
    def half_way() -> None:
        with store.db.write() as db:
            db.execute("INSERT INTO fingerprints VALUES (?, ?)", (1, "acme"))
            raise RuntimeError("the caller failed half way")

    with pytest.raises(RuntimeError):
        half_way()
    assert store.match_fingerprints([1]) == {}
    store.add_fingerprints("acme", [1])
    assert store.match_fingerprints([1]) == {1: frozenset({"acme"})}


def test_a_database_error_inside_a_write_is_a_store_error_and_rolls_it_back(
    store: SQLStore,
) -> None:
    def half_written() -> None:
        with store.db.write() as db:
            db.execute("INSERT INTO fingerprints VALUES (?, ?)", (1, "acme"))
            db.execute("INSERT INTO no_such_table VALUES (?)", (1,))

    with pytest.raises(StoreError, match="no_such_table"):
        half_written()
    assert store.match_fingerprints([1]) == {}


@contextmanager
def _held_by_another_connection(url: str) -> Iterator[None]:
    """Another connection holds what a write of fingerprints or provenance needs."""
    if url.startswith("sqlite:///"):
        lite = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        lite.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            lite.execute("ROLLBACK")
            lite.close()
        return
    with psycopg.connect(url, autocommit=True) as pg, pg.transaction():
        pg.execute("LOCK TABLE fingerprints, provenance IN ACCESS EXCLUSIVE MODE")
        yield


def test_a_locked_database_is_a_store_error_and_nothing_is_half_written(
    store_url: str,
) -> None:
    backend = store_url.partition(":")[0]
    store = open_url(store_url + ("&statement_timeout=0.2" if backend == "postgresql" else ""))
    try:
        if isinstance(store.db, SQLiteDatabase):
            store.db.connection.execute("PRAGMA busy_timeout=50")
        with _held_by_another_connection(store_url):
            with pytest.raises(StoreError, match=_WAITED_TOO_LONG[backend]):
                store.add_fingerprints("acme", [1, 2])
            with pytest.raises(StoreError, match=_WAITED_TOO_LONG[backend]):
                store.sweep_provenance(0.0, dry_run=False)
        store.add_fingerprints("acme", [1, 2])
        assert set(store.match_fingerprints([1, 2])) == {1, 2}
        assert store.fingerprints_since(0)[0] == [1, 2]
    finally:
        store.close()
