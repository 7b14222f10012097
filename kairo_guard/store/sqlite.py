"""The embedded store: one SQLite database in WAL mode under the state directory.

:class:`SQLiteStore` is the :class:`~kairo_guard.store.sql_store.SQLStore` tables on one
:class:`~kairo_guard.store.sqlite_db.SQLiteDatabase`, at the schema of :data:`MIGRATIONS`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kairo_guard.store.migrations import Migration, migrate
from kairo_guard.store.sql_store import SQLStore
from kairo_guard.store.sqlite_anchor import ANCHOR_SCHEMA
from kairo_guard.store.sqlite_coverage import COVERAGE_SCHEMA
from kairo_guard.store.sqlite_datasets import DATASET_SCHEMA
from kairo_guard.store.sqlite_db import SQLiteDatabase
from kairo_guard.store.sqlite_shards import SHARD_SCHEMA
from kairo_guard.store.sqlite_tenants import SCHEMA as TENANT_DATA_SCHEMA

DB_FILE_NAME = "state.sqlite3"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agreements (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL,
    granted_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    reference TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS agreements_tenant ON agreements (tenant);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    kdf TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant);
CREATE TABLE IF NOT EXISTS fingerprints (
    fp INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    PRIMARY KEY (fp, tenant)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fingerprints_tenant ON fingerprints (tenant);
CREATE TABLE IF NOT EXISTS fingerprint_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    fp INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fingerprint_log_fp ON fingerprint_log (fp);
CREATE TRIGGER IF NOT EXISTS fingerprint_logged AFTER INSERT ON fingerprints
BEGIN
    INSERT INTO fingerprint_log (fp) VALUES (new.fp);
END;
CREATE TRIGGER IF NOT EXISTS fingerprint_unlogged AFTER DELETE ON fingerprints
WHEN NOT EXISTS (SELECT 1 FROM fingerprints WHERE fp = old.fp)
BEGIN
    DELETE FROM fingerprint_log WHERE fp = old.fp;
END;
"""
# fingerprint_log: every fingerprint in the order it was indexed (AUTOINCREMENT: a
# position is never reused, even after deletes), so a reader can ask for what came
# after the last position it read (fingerprints_since). Its triggers keep it in step
# with the fingerprints table whoever writes to it; a fingerprint no tenant holds any
# more leaves the log too (erasure leaves no keyed hash behind).
_LOG_BACKFILL = (
    "INSERT INTO fingerprint_log (fp) SELECT fp FROM fingerprints"
    " WHERE NOT EXISTS (SELECT 1 FROM fingerprint_log)"
)


def script_statements(script: str) -> tuple[str, ...]:
    """The statements of a SQL script, each whole (a trigger's body included)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"an incomplete statement ends the script: {pending.strip()!r}")
    return tuple(statements)


MIGRATIONS = (
    # Version 1 is every table of the builds before schema versions; they may have
    # written it without a table added later (the log), so it is completed at opening.
    Migration(
        1,
        script_statements(_SCHEMA + DATASET_SCHEMA + TENANT_DATA_SCHEMA + SHARD_SCHEMA),
        repeat=True,
    ),
    Migration(2, script_statements(ANCHOR_SCHEMA)),
    Migration(3, script_statements(COVERAGE_SCHEMA)),
)
"""The SQLite schema, step by step (:mod:`kairo_guard.store.migrations`)."""
SCHEMA_VERSION = MIGRATIONS[-1].version


class SQLiteStore(SQLStore):
    """The embedded store: SQLite in WAL mode, one connection guarded by a lock.

    Args:
        path: the database file (created, with its directory, if missing).

    Raises:
        StoreError: if the database cannot be created, opened or migrated, or its schema
            is newer than this code.
    """

    def __init__(self, path: Path) -> None:
        db = SQLiteDatabase(path)
        try:
            migrate(db, MIGRATIONS)
            # a store indexed before the log existed: log what it holds, once
            if db.query("SELECT 1 FROM fingerprint_log LIMIT 1") == []:
                with db.write() as tx:
                    tx.execute(_LOG_BACKFILL)
        except BaseException:
            db.close()
            raise
        super().__init__(db)
