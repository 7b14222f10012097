"""The store's tables for retention, erasure and export: provenance rows, per-tenant
retention periods, and the pseudonyms of erased tenants.

:class:`TenantDataStore` is the contract (part of :class:`~kairo_guard.store.sqlite.Store`);
:class:`SQLiteTenantData` implements it for :class:`~kairo_guard.store.sqlite.SQLiteStore`.
A provenance row describes one sealed piece of ingested content without holding it:
digest, tenant, class, source, created_at, expires_at.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from kairo_guard.core.exceptions import StoreError
from kairo_guard.core.types import TenantId, validate_tenant

TENANT_TABLES = ("fingerprints", "agreements", "api_keys", "provenance", "retention_overrides")
"""Tables with a ``tenant`` column that erasure empties of the tenant's rows."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS provenance (
    digest TEXT NOT NULL,
    tenant TEXT NOT NULL,
    class TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS provenance_tenant ON provenance (tenant);
CREATE INDEX IF NOT EXISTS provenance_expires ON provenance (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS retention_overrides (
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL,
    seconds INTEGER NOT NULL,
    PRIMARY KEY (tenant, scope)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS erased_tenants (
    pseudonym TEXT PRIMARY KEY,
    erased_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class ProvenanceRow:
    """One sealed piece of a tenant's content, by digest: never the content itself."""

    digest: str
    tenant: TenantId
    data_class: str
    source: str
    created_at: int
    expires_at: int | None


class TenantDataStore(Protocol):
    """Provenance rows, retention periods and erased tenants (see module docstring)."""

    def add_provenance(self, rows: Iterable[ProvenanceRow]) -> None:
        """Record provenance rows."""
        ...

    def list_provenance(self, tenant: TenantId) -> list[ProvenanceRow]:
        """Return the tenant's provenance rows, oldest first."""
        ...

    def sweep_provenance(self, now: float, *, dry_run: bool) -> dict[tuple[str, str], int]:
        """Delete rows expired at ``now`` (unless ``dry_run``); count them by (tenant, class)."""
        ...

    def set_retention(self, tenant: TenantId, scope: str, seconds: int | None) -> None:
        """Set (or with None remove) a tenant's retention period for ``scope``."""
        ...

    def list_retention(self) -> dict[TenantId, dict[str, int]]:
        """Return every tenant's retention periods: tenant -> scope -> seconds."""
        ...

    def mark_erased(self, pseudonym: str, erased_at: float) -> None:
        """Remember that the tenant with ``pseudonym`` was erased at ``erased_at``."""
        ...

    def erased_tenants(self) -> dict[str, float]:
        """Return pseudonym -> erasure time of every erased tenant."""
        ...

    def erase_tenant(self, tenant: TenantId) -> dict[str, int]:
        """Delete the tenant's rows from :data:`TENANT_TABLES` in one transaction.

        Returns:
            Rows deleted per table.
        """
        ...


class SQLiteTenantData:
    """:class:`TenantDataStore` on the SQLite connection of a ``SQLiteStore``."""

    _db: sqlite3.Connection
    _lock: threading.Lock

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # provided by SQLiteStore

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # provided by SQLiteStore

    def _transaction(self, statements: Iterable[tuple[str, tuple[object, ...]]]) -> list[int]:
        with self._write() as db:
            return [db.execute(sql, params).rowcount for sql, params in statements]

    def add_provenance(self, rows: Iterable[ProvenanceRow]) -> None:
        """See :meth:`TenantDataStore.add_provenance`."""
        values = [
            (
                r.digest,
                validate_tenant(r.tenant),
                r.data_class,
                r.source,
                r.created_at,
                r.expires_at,
            )
            for r in rows
        ]
        with self._lock:
            try:
                self._db.executemany("INSERT INTO provenance VALUES (?, ?, ?, ?, ?, ?)", values)
            except sqlite3.Error as exc:
                raise StoreError(f"state database error: {exc}") from exc

    def list_provenance(self, tenant: TenantId) -> list[ProvenanceRow]:
        """See :meth:`TenantDataStore.list_provenance`."""
        rows = self._query(
            "SELECT digest, tenant, class, source, created_at, expires_at FROM provenance"
            " WHERE tenant = ? ORDER BY created_at, rowid",
            (tenant,),
        )
        return [
            ProvenanceRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), r[5]) for r in rows
        ]

    def sweep_provenance(self, now: float, *, dry_run: bool) -> dict[tuple[str, str], int]:
        """See :meth:`TenantDataStore.sweep_provenance`."""
        where = "expires_at IS NOT NULL AND expires_at <= ?"
        count_sql = f"SELECT tenant, class, COUNT(*) FROM provenance WHERE {where} GROUP BY 1, 2"  # noqa: S608 - constant
        with self._write() as db:
            counts = {(str(t), str(c)): int(n) for t, c, n in db.execute(count_sql, (now,))}
            if not dry_run:
                db.execute(f"DELETE FROM provenance WHERE {where}", (now,))  # noqa: S608
        return counts

    def set_retention(self, tenant: TenantId, scope: str, seconds: int | None) -> None:
        """See :meth:`TenantDataStore.set_retention`."""
        validate_tenant(tenant)
        if seconds is None:
            self._query(
                "DELETE FROM retention_overrides WHERE tenant = ? AND scope = ?", (tenant, scope)
            )
        else:
            self._query(
                "INSERT OR REPLACE INTO retention_overrides VALUES (?, ?, ?)",
                (tenant, scope, seconds),
            )

    def list_retention(self) -> dict[TenantId, dict[str, int]]:
        """See :meth:`TenantDataStore.list_retention`."""
        found: dict[TenantId, dict[str, int]] = {}
        for tenant, scope, seconds in self._query(
            "SELECT tenant, scope, seconds FROM retention_overrides"
        ):
            found.setdefault(str(tenant), {})[str(scope)] = int(seconds)
        return found

    def mark_erased(self, pseudonym: str, erased_at: float) -> None:
        """See :meth:`TenantDataStore.mark_erased`."""
        self._query("INSERT OR REPLACE INTO erased_tenants VALUES (?, ?)", (pseudonym, erased_at))

    def erased_tenants(self) -> dict[str, float]:
        """See :meth:`TenantDataStore.erased_tenants`."""
        return {
            str(p): float(t)
            for p, t in self._query("SELECT pseudonym, erased_at FROM erased_tenants")
        }

    def erase_tenant(self, tenant: TenantId) -> dict[str, int]:
        """See :meth:`TenantDataStore.erase_tenant`.

        Deleted pages are overwritten (``secure_delete``) and the write-ahead log is
        checkpointed, so the rows do not linger in the file either.
        """
        validate_tenant(tenant)
        self._query("PRAGMA secure_delete = ON")
        try:
            counts = self._transaction(
                (f"DELETE FROM {table} WHERE tenant = ?", (tenant,))  # noqa: S608 - constant names
                for table in TENANT_TABLES
            )
        finally:
            self._query("PRAGMA secure_delete = OFF")
        self._query("PRAGMA wal_checkpoint(TRUNCATE)")
        return dict(zip(TENANT_TABLES, counts, strict=True))
