"""The tables for retention, erasure and export: provenance rows, per-tenant retention
periods, and the pseudonyms of erased tenants.

:class:`SQLiteTenantData` implements :class:`~kairo_guard.store.base.TenantDataStore`
for :class:`~kairo_guard.store.sql_store.SQLStore` (a mixin over its ``db``), in SQL
both backends run; :data:`SCHEMA` is the tables' SQLite schema. A provenance row
describes one sealed piece of ingested content without holding it: digest, tenant,
class, source, created_at, expires_at.
"""

from __future__ import annotations

from collections.abc import Iterable

from kairo_guard.core.types import TenantId, validate_tenant
from kairo_guard.store.base import TENANT_TABLES, ProvenanceRow
from kairo_guard.store.sql import Database

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
_PROVENANCE_COLUMNS = "digest, tenant, class, source, created_at, expires_at"
_INSERT_PROVENANCE = f"INSERT INTO provenance ({_PROVENANCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608 - constant names


class SQLiteTenantData:
    """:class:`TenantDataStore` on the database of a ``SQLStore`` (SQLite or PostgreSQL)."""

    db: Database
    key_generation: int = 0
    """Counts revocations and erasures through this object (``Store.key_generation``; an
    attribute, not a property: the middleware's native gate reads it on every request)."""

    def add_provenance(self, rows: Iterable[ProvenanceRow]) -> None:
        """See :meth:`~kairo_guard.store.base.TenantDataStore.add_provenance`."""
        values = _provenance_values(rows)
        with self.db.write() as db:
            db.executemany(_INSERT_PROVENANCE, values)

    def record_ingested(
        self, fingerprints: Iterable[tuple[int, TenantId]], provenance: Iterable[ProvenanceRow]
    ) -> None:
        """See :meth:`~kairo_guard.store.base.TenantDataStore.record_ingested`."""
        pairs = sorted(fingerprints)  # in key order: the B-trees are walked, not jumped
        for tenant in {tenant for _, tenant in pairs}:
            validate_tenant(tenant)
        rows = _provenance_values(provenance)
        with self.db.write() as db:
            self.db.dialect.add_fingerprints(db, pairs)
            db.executemany(_INSERT_PROVENANCE, rows)

    def list_provenance(self, tenant: TenantId) -> list[ProvenanceRow]:
        """See :meth:`~kairo_guard.store.base.TenantDataStore.list_provenance`."""
        rows = self.db.query(
            f"SELECT {_PROVENANCE_COLUMNS} FROM provenance"  # noqa: S608 - constant names
            f" WHERE tenant = ? ORDER BY created_at, {self.db.dialect.insertion_order}",
            (tenant,),
        )
        return [
            ProvenanceRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), r[5]) for r in rows
        ]

    def sweep_provenance(self, now: float, *, dry_run: bool) -> dict[tuple[str, str], int]:
        """See :meth:`~kairo_guard.store.base.TenantDataStore.sweep_provenance`."""
        where = "expires_at IS NOT NULL AND expires_at <= ?"
        count_sql = f"SELECT tenant, class, COUNT(*) FROM provenance WHERE {where} GROUP BY 1, 2"  # noqa: S608 - constant
        with self.db.write() as db:
            counts = {(str(t), str(c)): int(n) for t, c, n in db.execute(count_sql, (now,))}
            if not dry_run:
                db.execute(f"DELETE FROM provenance WHERE {where}", (now,))  # noqa: S608
        return counts

    def set_retention(self, tenant: TenantId, scope: str, seconds: int | None) -> None:
        """See :meth:`~kairo_guard.store.base.TenantDataStore.set_retention`."""
        validate_tenant(tenant)
        if seconds is None:
            self.db.query(
                "DELETE FROM retention_overrides WHERE tenant = ? AND scope = ?", (tenant, scope)
            )
        else:
            self.db.query(
                "INSERT INTO retention_overrides (tenant, scope, seconds) VALUES (?, ?, ?)"
                " ON CONFLICT (tenant, scope) DO UPDATE SET seconds = excluded.seconds",
                (tenant, scope, seconds),
            )

    def list_retention(self) -> dict[TenantId, dict[str, int]]:
        """See :meth:`~kairo_guard.store.base.TenantDataStore.list_retention`."""
        found: dict[TenantId, dict[str, int]] = {}
        for tenant, scope, seconds in self.db.query(
            "SELECT tenant, scope, seconds FROM retention_overrides"
        ):
            found.setdefault(str(tenant), {})[str(scope)] = int(seconds)
        return found

    def mark_erased(self, pseudonym: str, erased_at: float) -> None:
        """See :meth:`~kairo_guard.store.base.TenantDataStore.mark_erased`."""
        self.db.query(
            "INSERT INTO erased_tenants (pseudonym, erased_at) VALUES (?, ?)"
            " ON CONFLICT (pseudonym) DO UPDATE SET erased_at = excluded.erased_at",
            (pseudonym, erased_at),
        )

    def erased_tenants(self) -> dict[str, float]:
        """See :meth:`~kairo_guard.store.base.TenantDataStore.erased_tenants`."""
        return {
            str(p): float(t)
            for p, t in self.db.query("SELECT pseudonym, erased_at FROM erased_tenants")
        }

    def erase_tenant(self, tenant: TenantId) -> dict[str, int]:
        """See :meth:`~kairo_guard.store.base.TenantDataStore.erase_tenant`.

        What the backend does so the rows do not linger in its files either is
        :meth:`~kairo_guard.store.sql.Database.erasing`.
        """
        self.key_generation += 1
        validate_tenant(tenant)
        with self.db.erasing(), self.db.write() as db:
            counts = [
                db.execute(f"DELETE FROM {table} WHERE tenant = ?", (tenant,)).rowcount  # noqa: S608 - constant names
                for table in TENANT_TABLES
            ]
        return dict(zip(TENANT_TABLES, counts, strict=True))


def _provenance_values(rows: Iterable[ProvenanceRow]) -> list[tuple[object, ...]]:
    """Provenance rows as the table's columns, each tenant id checked."""
    return [
        (r.digest, validate_tenant(r.tenant), r.data_class, r.source, r.created_at, r.expires_at)
        for r in rows
    ]
