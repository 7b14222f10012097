"""The guard's state as SQL tables, on any :class:`~kairo_guard.store.sql.Database`.

:class:`SQLStore` implements :class:`~kairo_guard.store.base.Store`: agreements, API keys
and fingerprints here; datasets and models in :mod:`.sqlite_datasets`; provenance,
retention and erasure in :mod:`.sqlite_tenants`; shards in :mod:`.sqlite_shards`; audit
anchors in :mod:`.sqlite_anchor`. Their statements are written once, in the SQL SQLite and
PostgreSQL share; what differs is the backend's :class:`~kairo_guard.store.sql.Dialect`.
The backends (:class:`~kairo_guard.store.sqlite.SQLiteStore`,
:class:`~kairo_guard.store.postgres.PostgresStore`) only open a database and migrate it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Iterator
from typing import Any

from kairo_guard.core.types import TenantId, validate_tenant
from kairo_guard.store.base import (
    DEFAULT_SCOPE,
    FINGERPRINTS_PAGE,
    SCOPE_PATTERN,
    Agreement,
    ApiKeyRecord,
    scope_words,
)
from kairo_guard.store.sql import Database
from kairo_guard.store.sqlite_anchor import AnchorTables
from kairo_guard.store.sqlite_coverage import CoverageTables
from kairo_guard.store.sqlite_datasets import DatasetTables
from kairo_guard.store.sqlite_shards import ShardTables
from kairo_guard.store.sqlite_tenants import SQLiteTenantData

_SQL_CHUNK = 500
_AGREEMENT_COLUMNS = "id, tenant, scope, granted_at, expires_at, revoked_at, reference"
_API_KEY_COLUMNS = "key_id, tenant, kdf, salt, hash, created_at, revoked_at"


class SQLStore(DatasetTables, SQLiteTenantData, ShardTables, AnchorTables, CoverageTables):
    """The store's tables on an open, migrated database; safe to share between threads
    (the database serializes what must be).

    Args:
        db: the database every statement runs through.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def grant_agreement(
        self,
        tenant: TenantId,
        *,
        now: float,
        expires_at: float | None,
        reference: str = "",
        scope: str = DEFAULT_SCOPE,
        valid_for: float | None = None,
    ) -> tuple[Agreement, bool]:
        """See :meth:`~kairo_guard.store.base.Store.grant_agreement`."""
        validate_tenant(tenant)
        if valid_for is not None:
            if expires_at is not None:
                raise ValueError("give expires_at or valid_for, not both")
            expires_at = now + valid_for
        if SCOPE_PATTERN.fullmatch(scope) is None:
            raise ValueError(
                f"invalid agreement scope {scope!r}: words of [a-z0-9-], separated by commas"
            )
        if expires_at is not None and expires_at <= now:
            raise ValueError("an agreement must expire after it is granted")
        with self.db.write() as db:  # the lookup and the insert in one transaction
            if reference:
                rows = db.execute(
                    f"SELECT {_AGREEMENT_COLUMNS} FROM agreements"  # noqa: S608 - constant columns
                    " WHERE tenant = ? AND reference = ? ORDER BY granted_at, id",
                    (tenant, reference),
                ).fetchall()
                for existing in map(_agreement, rows):
                    if existing.active(now):
                        return _same_terms(existing, scope, expires_at, valid_for), False
            agreement = Agreement(
                id=f"agr_{uuid.uuid4().hex[:16]}",
                tenant=tenant,
                scope=scope,
                granted_at=now,
                expires_at=expires_at,
                revoked_at=None,
                reference=reference,
            )
            db.execute(
                f"INSERT INTO agreements ({_AGREEMENT_COLUMNS})"  # noqa: S608 - constant columns
                " VALUES (?, ?, ?, ?, ?, NULL, ?)",
                (agreement.id, tenant, scope, now, expires_at, reference),
            )
        return agreement, True

    def revoke_agreements(self, tenant: TenantId, *, now: float, agreement_id: str | None) -> int:
        """See :meth:`~kairo_guard.store.base.Store.revoke_agreements`."""
        validate_tenant(tenant)
        sql = "UPDATE agreements SET revoked_at = ? WHERE tenant = ? AND revoked_at IS NULL"
        params: tuple[object, ...] = (now, tenant)
        if agreement_id is not None:
            sql += " AND id = ?"
            params = (*params, agreement_id)
        return self.db.count(sql, params)

    def list_agreements(self, tenant: TenantId | None = None) -> list[Agreement]:
        """See :meth:`~kairo_guard.store.base.Store.list_agreements`."""
        sql = f"SELECT {_AGREEMENT_COLUMNS} FROM agreements"  # noqa: S608 - constant columns
        params: tuple[object, ...] = ()
        if tenant is not None:
            sql += " WHERE tenant = ?"
            params = (tenant,)
        return [_agreement(r) for r in self.db.query(sql + " ORDER BY granted_at, id", params)]

    def add_api_key(self, record: ApiKeyRecord) -> None:
        """See :meth:`~kairo_guard.store.base.Store.add_api_key`."""
        validate_tenant(record.tenant)
        self.db.query(
            f"INSERT INTO api_keys ({_API_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - constant columns
            (
                record.key_id,
                record.tenant,
                record.kdf,
                record.salt,
                record.hash,
                record.created_at,
                record.revoked_at,
            ),
        )

    def tenant_ids(self) -> frozenset[TenantId]:
        """See :meth:`~kairo_guard.store.base.Store.tenant_ids`."""
        return frozenset(str(r[0]) for r in self.db.query("SELECT DISTINCT tenant FROM api_keys"))

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """See :meth:`~kairo_guard.store.base.Store.get_api_key`."""
        rows = self.db.query(
            f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE key_id = ?",  # noqa: S608 - constant columns
            (key_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return ApiKeyRecord(
            key_id=str(r[0]),
            tenant=str(r[1]),
            kdf=str(r[2]),
            salt=bytes(r[3]),
            hash=bytes(r[4]),
            created_at=float(r[5]),
            revoked_at=None if r[6] is None else float(r[6]),
        )

    def revoke_api_keys(self, tenant: TenantId, *, now: float, key_id: str | None) -> int:
        """See :meth:`~kairo_guard.store.base.Store.revoke_api_keys`."""
        self.key_generation += 1
        sql = "UPDATE api_keys SET revoked_at = ? WHERE tenant = ? AND revoked_at IS NULL"
        params: tuple[object, ...] = (now, tenant)
        if key_id is not None:
            sql += " AND key_id = ?"
            params = (*params, key_id)
        return self.db.count(sql, params)

    def add_fingerprints(self, tenant: TenantId, fingerprints: Iterable[int]) -> None:
        """See :meth:`~kairo_guard.store.base.Store.add_fingerprints`."""
        validate_tenant(tenant)
        rows = [(fp, tenant) for fp in fingerprints]
        if not rows:
            return
        with self.db.write() as db:
            self.db.dialect.add_fingerprints(db, rows)

    def claim_fingerprint_scheme(self, scheme: str) -> str | None:
        """See :meth:`~kairo_guard.store.base.Store.claim_fingerprint_scheme`."""
        # every guard start asks: answer from a read once the scheme is recorded, so
        # opening a guard takes the write lock only on a new store
        rows = self.db.query("SELECT value FROM meta WHERE key = 'fingerprint_scheme'")
        if rows:
            return str(rows[0][0])
        with self.db.write() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint_scheme'").fetchone()
            if row is not None:
                return str(row[0])
            if db.execute("SELECT 1 FROM fingerprints LIMIT 1").fetchone() is not None:
                return None
            db.execute("INSERT INTO meta (key, value) VALUES ('fingerprint_scheme', ?)", (scheme,))
            return scheme

    def rebind_fingerprint_scheme(self, old: str, new: str) -> str:
        """See :meth:`~kairo_guard.store.base.Store.rebind_fingerprint_scheme`."""
        with self.db.write() as db:
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'fingerprint_scheme' AND value = ?",
                (new, old),
            )
            row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint_scheme'").fetchone()
        return str(row[0]) if row is not None else new

    def match_fingerprints(self, fingerprints: Collection[int]) -> dict[int, frozenset[TenantId]]:
        """See :meth:`~kairo_guard.store.base.Store.match_fingerprints`."""
        found: dict[int, set[TenantId]] = {}
        values = list(fingerprints)
        for start in range(0, len(values), _SQL_CHUNK):
            chunk = values[start : start + _SQL_CHUNK]
            sql = f"SELECT fp, tenant FROM fingerprints WHERE fp IN ({','.join('?' * len(chunk))})"  # noqa: S608 - placeholders only
            rows = self.db.query(sql, tuple(chunk))
            for fp, tenant in rows:
                found.setdefault(int(fp), set()).add(str(tenant))
        return {fp: frozenset(tenants) for fp, tenants in found.items()}

    def fingerprints_since(
        self, after: int, limit: int = FINGERPRINTS_PAGE
    ) -> tuple[list[int], int]:
        """See :meth:`~kairo_guard.store.base.Store.fingerprints_since`."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows = self.db.query(
            "SELECT seq, fp FROM fingerprint_log WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        if not rows:
            return [], after
        return [int(fp) for _, fp in rows], int(rows[-1][0])

    def delete_fingerprints(self, tenant: TenantId) -> int:
        """See :meth:`~kairo_guard.store.base.Store.delete_fingerprints`."""
        # a write transaction, as every change to the fingerprints: on PostgreSQL a delete
        # beside an insert of the same rows could otherwise deadlock on the log's lock
        with self.db.write() as db:
            return db.execute("DELETE FROM fingerprints WHERE tenant = ?", (tenant,)).rowcount

    def iter_fingerprints(self) -> Iterator[tuple[int, TenantId]]:
        """See :meth:`~kairo_guard.store.base.Store.iter_fingerprints`."""
        for fp, tenant in self.db.query("SELECT fp, tenant FROM fingerprints ORDER BY fp"):
            yield int(fp), str(tenant)

    def close(self) -> None:
        """See :meth:`~kairo_guard.store.base.Store.close`."""
        self.db.close()


def _agreement(r: tuple[Any, ...]) -> Agreement:
    return Agreement(
        id=str(r[0]),
        tenant=str(r[1]),
        scope=str(r[2]),
        granted_at=float(r[3]),
        expires_at=None if r[4] is None else float(r[4]),
        revoked_at=None if r[5] is None else float(r[5]),
        reference=str(r[6]),
    )


def _same_terms(
    existing: Agreement, scope: str, expires_at: float | None, valid_for: float | None
) -> Agreement:
    """Return ``existing`` if a grant of ``scope`` until ``expires_at`` repeats it; a
    grant ``valid_for`` seconds repeats it when ``existing`` ends that long after its
    own grant (the same sum of the same floats: exact).

    Raises:
        ValueError: the reference is already active under other terms; changing them
            silently would widen or narrow what was signed.
    """
    if valid_for is not None:
        expires_at = existing.granted_at + valid_for
    if scope_words(existing.scope) == scope_words(scope) and existing.expires_at == expires_at:
        return existing
    raise ValueError(
        f"agreement reference {existing.reference!r} is already active as {existing.id} "
        f"(scope {existing.scope!r}, expires_at {existing.expires_at}): revoke it first, "
        "or grant the new terms under a new reference"
    )
