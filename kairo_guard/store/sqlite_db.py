"""One SQLite connection shared by threads: queries, counts and write transactions.

:class:`SQLiteDatabase` is the :class:`~kairo_guard.store.sql.Database` of
:class:`~kairo_guard.store.sqlite.SQLiteStore`: the table classes run their statements
through it. Every :class:`sqlite3.Error` leaves it as
:class:`~kairo_guard.core.exceptions.StoreError`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kairo_guard.core.exceptions import StoreError
from kairo_guard.store.sql import SQLITE, Dialect

_SECURE_DELETE = {0: "OFF", 1: "ON", 2: "FAST"}
"""``PRAGMA secure_delete``'s values as read, as it is set."""


class SQLiteDatabase:
    """A SQLite database in WAL mode behind one lock.

    Args:
        path: the database file (created with mode 0600, its directory 0700).

    Raises:
        StoreError: if the file cannot be created or opened.
    """

    dialect: Dialect = SQLITE

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.lock = threading.Lock()
        try:
            # Tenant ids and agreements are private: create the file 0600 (SQLite gives
            # its -wal and -shm files the same mode).
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=NORMAL")
            self.connection.execute("PRAGMA busy_timeout=5000")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open state database {path}: {exc}") from exc

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement under the lock; return its rows."""
        with self.lock:
            try:
                return self.connection.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"state database error: {exc}") from exc

    def count(self, sql: str, params: Sequence[object]) -> int:
        """Run one changing statement under the lock; return how many rows it changed."""
        with self.lock:
            try:
                return self.connection.execute(sql, params).rowcount
            except sqlite3.Error as exc:
                raise StoreError(f"state database error: {exc}") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock: committed at the end of the block, or
        rolled back (on any error) and, for a database error, raised as StoreError."""
        db = self.connection
        with self.lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"state database error: {exc}") from exc
                raise

    @contextlib.contextmanager
    def erasing(self) -> Iterator[None]:
        """Deleted rows are overwritten (``secure_delete``, then set back as it was), the
        file is rebuilt (``VACUUM``: bytes freed earlier without being overwritten, by page
        splits or by deletes while ``secure_delete`` was off, do not survive it) and the
        write-ahead log is checkpointed and emptied, so erased rows do not linger in the
        files either. The rebuild rewrites the whole state file: an erasure takes time in
        proportion to it."""
        (before,) = self.query("PRAGMA secure_delete")[0]
        self.query("PRAGMA secure_delete = ON")
        try:
            yield
        finally:
            self.query(f"PRAGMA secure_delete = {_SECURE_DELETE.get(int(before), 'ON')}")
        self.query("VACUUM")
        self.query("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close the connection; the database is unusable afterwards."""
        with self.lock:
            self.connection.close()
