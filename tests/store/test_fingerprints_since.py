"""The store's log of indexed fingerprints: what a reader reads after a position (on
each backend)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kairo_guard.store.sql_store import SQLStore
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore


def _all_since(store: SQLStore, after: int, limit: int = 2) -> tuple[list[int], int]:
    rows: list[int] = []
    while True:
        page, after = store.fingerprints_since(after, limit)
        if not page:
            return rows, after
        rows += page


def test_when_fingerprints_are_added_after_a_position_then_only_those_are_read(
    store: SQLStore,
) -> None:
    store.add_fingerprints("acme", [10, 11, 12])
    first, mark = _all_since(store, 0)
    assert sorted(first) == [10, 11, 12]
    assert store.fingerprints_since(mark) == ([], mark)
    store.add_fingerprints("globex", [12, 13])
    store.add_fingerprints("acme", [10])  # already indexed: nothing new
    later, _ = _all_since(store, mark)
    assert sorted(later) == [12, 13]


def test_when_the_newest_rows_are_deleted_then_their_positions_are_not_reused(
    store: SQLStore,
) -> None:
    store.add_fingerprints("acme", [1])
    store.add_fingerprints("globex", [2, 3])
    _, mark = _all_since(store, 0)
    store.erase_tenant("globex")
    store.add_fingerprints("initech", [4])  # would take a deleted position if reused
    assert _all_since(store, mark)[0] == [4]


def test_when_a_tenant_is_erased_then_only_fingerprints_no_one_holds_leave_the_log(
    store: SQLStore,
) -> None:
    store.add_fingerprints("acme", [1, 2])
    store.add_fingerprints("globex", [2])
    store.delete_fingerprints("acme")
    assert sorted(_all_since(store, 0)[0]) == [2, 2]
    store.erase_tenant("globex")
    assert _all_since(store, 0)[0] == []


def test_when_a_store_was_indexed_before_the_log_then_opening_it_logs_what_it_holds(
    tmp_path: Path,
) -> None:
    path = tmp_path / DB_FILE_NAME
    SQLiteStore(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        "DROP TRIGGER fingerprint_logged; DROP TRIGGER fingerprint_unlogged;"
        "DROP TABLE fingerprint_log;"
        "INSERT INTO fingerprints VALUES (7, 'acme'), (8, 'globex');"
        "UPDATE meta SET value = '1' WHERE key = 'schema_version';"  # as those builds left it
    )
    db.close()
    store = SQLiteStore(path)
    assert sorted(_all_since(store, 0)[0]) == [7, 8]
    store.add_fingerprints("acme", [9])
    assert sorted(_all_since(store, 0)[0]) == [7, 8, 9]


def test_when_fingerprints_span_the_signed_64_bit_range_then_they_are_read_back_whole(
    store: SQLStore,
) -> None:
    extremes = [-(2**63), -1, 0, 2**63 - 1]
    store.add_fingerprints("acme", extremes)
    assert sorted(_all_since(store, 0)[0]) == extremes
    assert set(store.match_fingerprints(extremes)) == set(extremes)
    assert store.fingerprint_position() == _all_since(store, 0)[1]
