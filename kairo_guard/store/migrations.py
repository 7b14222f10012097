"""Versioned schemas: each backend's ordered list of migrations, applied at opening.

A store records its schema version in ``meta`` (key ``schema_version``). Opening it runs,
in one write transaction (serialized with every other writer and opener of the store:
SQLite's write lock, PostgreSQL's advisory lock, see :meth:`.sql.Database.write`), every
migration past that version, then records the last. A store whose version is newer than
the code refuses to open: an older guard cannot know what a newer schema means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kairo_guard.core.exceptions import StoreError
from kairo_guard.store.sql import Database

META_TABLE = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
"""Key-value facts about the store (its schema version, its fingerprint scheme)."""
_SET_VERSION = (
    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


@dataclass(frozen=True)
class Migration:
    """One step of a schema: the statements that bring version ``version - 1`` to it."""

    version: int
    statements: tuple[str, ...]
    repeat: bool = False
    """Run again at every opening of a store of exactly this version (its statements
    must be idempotent): completes stores written by builds that added tables without
    counting up the version. Never set it on a step a later step undoes."""


def migrate(db: Database, migrations: Sequence[Migration]) -> int:
    """Bring the store to the last of ``migrations``; return its version.

    Raises:
        StoreError: the store's schema is newer than ``migrations`` (or unreadable), or
            a migration failed (nothing of it is kept).
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, ... in order, not {versions}")
    latest = versions[-1]
    with db.write() as tx:
        tx.execute(META_TABLE)
        row = tx.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        current = _version(row)
        if current > latest:
            raise StoreError(
                f"the state database's schema is version {current}, newer than this "
                f"kairo-guard knows (version {latest}): upgrade kairo-guard to open it "
                "(a store is never migrated down)"
            )
        for migration in migrations:
            if migration.version > current or (migration.repeat and migration.version == current):
                for statement in migration.statements:
                    tx.execute(statement)
        if current != latest:
            tx.execute(_SET_VERSION, (str(latest),))
    return latest


def schema_version(db: Database) -> int:
    """The schema version the store records (0: none)."""
    return _version(
        next(iter(db.query("SELECT value FROM meta WHERE key = 'schema_version'")), None)
    )


def _version(row: Sequence[object] | None) -> int:
    if row is None:
        return 0
    try:
        return int(str(row[0]))
    except ValueError:
        raise StoreError(f"the state database records no schema version: {row[0]!r}") from None
