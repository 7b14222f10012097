"""The state store: what the guard must remember between processes.

:class:`Store` is the contract (a Protocol); :class:`SQLiteStore` is the embedded
default, one SQLite database in WAL mode under the state directory. Other backends
(PostgreSQL for several replicas) implement the same methods.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kairo_guard.core.exceptions import StoreError
from kairo_guard.core.types import TenantId, validate_tenant
from kairo_guard.store.datasets import DATASET_SCHEMA, DatasetStore, DatasetTables
from kairo_guard.store.datasets import DatasetInfo as DatasetInfo  # re-exported
from kairo_guard.store.datasets import ModelInfo as ModelInfo  # re-exported
from kairo_guard.store.tenants import SCHEMA as TENANT_DATA_SCHEMA
from kairo_guard.store.tenants import SQLiteTenantData, TenantDataStore

DB_FILE_NAME = "state.sqlite3"
SCHEMA_VERSION = 1
DEFAULT_SCOPE = "fine-tune"
"""The scope word an agreement needs to permit a tenant fine-tune."""
SCOPE_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,39}(,[a-z0-9][a-z0-9-]{0,39}){0,15}")
_SQL_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Agreement:
    """A tenant's data processing agreement that permits fine-tuning on its content."""

    id: str
    tenant: TenantId
    scope: str
    granted_at: float
    expires_at: float | None
    revoked_at: float | None
    reference: str

    def active(self, now: float) -> bool:
        """True if granted, not revoked, and not expired at ``now``."""
        return (
            self.revoked_at is None
            and self.granted_at <= now
            and (self.expires_at is None or now < self.expires_at)
        )

    def permits_fine_tune(self, now: float) -> bool:
        """True if active at ``now`` and its scope (words split on commas or spaces)
        covers fine-tuning."""
        return self.active(now) and DEFAULT_SCOPE in self.scope.replace(",", " ").split()


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A tenant's API key as stored: only its public id and a slow hash of the secret."""

    key_id: str
    tenant: TenantId
    kdf: str
    """How ``hash`` was derived, e.g. ``scrypt$16384$8$1``."""
    salt: bytes
    hash: bytes
    created_at: float
    revoked_at: float | None


class Store(DatasetStore, TenantDataStore, Protocol):
    """Persistent state the guard reads on its decision path.

    Implementations must be safe to share between threads and raise
    :class:`~kairo_guard.core.exceptions.StoreError` (never anything else) on failure.
    """

    def grant_agreement(
        self,
        tenant: TenantId,
        *,
        now: float,
        expires_at: float | None,
        reference: str = "",
        scope: str = DEFAULT_SCOPE,
    ) -> Agreement:
        """Record a new active agreement for ``tenant`` and return it.

        Raises:
            ValueError: invalid tenant, scope, or an expiry not after ``now``.
        """
        ...

    def revoke_agreements(self, tenant: TenantId, *, now: float, agreement_id: str | None) -> int:
        """Revoke one agreement (or all of the tenant's); return how many were revoked."""
        ...

    def list_agreements(self, tenant: TenantId | None = None) -> list[Agreement]:
        """Return agreements, oldest first, optionally for one tenant."""
        ...

    def add_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new API key record."""
        ...

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """Return the record of an API key id, revoked or not, or None."""
        ...

    def revoke_api_keys(self, tenant: TenantId, *, now: float, key_id: str | None) -> int:
        """Revoke one or all of a tenant's API keys; return how many were revoked."""
        ...

    def add_fingerprints(self, tenant: TenantId, fingerprints: Iterable[int]) -> None:
        """Index content fingerprints as ``tenant``'s (idempotent)."""
        ...

    def match_fingerprints(self, fingerprints: Collection[int]) -> dict[int, frozenset[TenantId]]:
        """Return, for each given fingerprint that is indexed, the tenants it belongs to."""
        ...

    def delete_fingerprints(self, tenant: TenantId) -> int:
        """Remove every fingerprint of ``tenant``; return how many rows went."""
        ...

    def iter_fingerprints(self) -> Iterator[tuple[int, TenantId]]:
        """Yield every indexed (fingerprint, tenant) pair (for exports)."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...


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
"""


class SQLiteStore(DatasetTables, SQLiteTenantData):
    """The embedded store: SQLite in WAL mode, one connection guarded by a lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        try:
            # Tenant ids and agreements are private: create the file 0600 (SQLite gives
            # its -wal and -shm files the same mode).
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA + DATASET_SCHEMA + TENANT_DATA_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open state database {path}: {exc}") from exc

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"state database error: {exc}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock: committed at the end of the block, or
        rolled back (on any error) and, for a database error, raised as StoreError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"state database error: {exc}") from exc
                raise

    def _count(self, sql: str, params: tuple[object, ...]) -> int:
        """Run one changing statement; return how many rows it changed."""
        with self._lock:
            try:
                return self._db.execute(sql, params).rowcount
            except sqlite3.Error as exc:
                raise StoreError(f"state database error: {exc}") from exc

    def grant_agreement(
        self,
        tenant: TenantId,
        *,
        now: float,
        expires_at: float | None,
        reference: str = "",
        scope: str = DEFAULT_SCOPE,
    ) -> Agreement:
        """See :meth:`Store.grant_agreement`."""
        validate_tenant(tenant)
        if SCOPE_PATTERN.fullmatch(scope) is None:
            raise ValueError(
                f"invalid agreement scope {scope!r}: words of [a-z0-9-], separated by commas"
            )
        if expires_at is not None and expires_at <= now:
            raise ValueError("an agreement must expire after it is granted")
        agreement = Agreement(
            id=f"agr_{uuid.uuid4().hex[:16]}",
            tenant=tenant,
            scope=scope,
            granted_at=now,
            expires_at=expires_at,
            revoked_at=None,
            reference=reference,
        )
        self._query(
            "INSERT INTO agreements VALUES (?, ?, ?, ?, ?, NULL, ?)",
            (agreement.id, tenant, agreement.scope, now, expires_at, reference),
        )
        return agreement

    def revoke_agreements(self, tenant: TenantId, *, now: float, agreement_id: str | None) -> int:
        """See :meth:`Store.revoke_agreements`."""
        validate_tenant(tenant)
        sql = "UPDATE agreements SET revoked_at = ? WHERE tenant = ? AND revoked_at IS NULL"
        params: tuple[object, ...] = (now, tenant)
        if agreement_id is not None:
            sql += " AND id = ?"
            params = (*params, agreement_id)
        return self._count(sql, params)

    def list_agreements(self, tenant: TenantId | None = None) -> list[Agreement]:
        """See :meth:`Store.list_agreements`."""
        sql = (
            "SELECT id, tenant, scope, granted_at, expires_at, revoked_at, reference"
            " FROM agreements"
        )
        params: tuple[object, ...] = ()
        if tenant is not None:
            sql += " WHERE tenant = ?"
            params = (tenant,)
        rows = self._query(sql + " ORDER BY granted_at, id", params)
        return [
            Agreement(
                id=str(r[0]),
                tenant=str(r[1]),
                scope=str(r[2]),
                granted_at=float(r[3]),
                expires_at=None if r[4] is None else float(r[4]),
                revoked_at=None if r[5] is None else float(r[5]),
                reference=str(r[6]),
            )
            for r in rows
        ]

    def add_api_key(self, record: ApiKeyRecord) -> None:
        """See :meth:`Store.add_api_key`."""
        validate_tenant(record.tenant)
        self._query(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?)",
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

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """See :meth:`Store.get_api_key`."""
        rows = self._query(
            "SELECT key_id, tenant, kdf, salt, hash, created_at, revoked_at FROM api_keys"
            " WHERE key_id = ?",
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
        """See :meth:`Store.revoke_api_keys`."""
        sql = "UPDATE api_keys SET revoked_at = ? WHERE tenant = ? AND revoked_at IS NULL"
        params: tuple[object, ...] = (now, tenant)
        if key_id is not None:
            sql += " AND key_id = ?"
            params = (*params, key_id)
        return self._count(sql, params)

    def add_fingerprints(self, tenant: TenantId, fingerprints: Iterable[int]) -> None:
        """See :meth:`Store.add_fingerprints`."""
        validate_tenant(tenant)
        rows = [(fp, tenant) for fp in fingerprints]
        if not rows:
            return
        with self._write() as db:
            db.executemany("INSERT OR IGNORE INTO fingerprints VALUES (?, ?)", rows)

    def match_fingerprints(self, fingerprints: Collection[int]) -> dict[int, frozenset[TenantId]]:
        """See :meth:`Store.match_fingerprints`."""
        found: dict[int, set[TenantId]] = {}
        values = list(fingerprints)
        for start in range(0, len(values), _SQL_CHUNK):
            chunk = values[start : start + _SQL_CHUNK]
            sql = f"SELECT fp, tenant FROM fingerprints WHERE fp IN ({','.join('?' * len(chunk))})"  # noqa: S608 - placeholders only
            rows = self._query(sql, tuple(chunk))
            for fp, tenant in rows:
                found.setdefault(int(fp), set()).add(str(tenant))
        return {fp: frozenset(tenants) for fp, tenants in found.items()}

    def delete_fingerprints(self, tenant: TenantId) -> int:
        """See :meth:`Store.delete_fingerprints`."""
        return self._count("DELETE FROM fingerprints WHERE tenant = ?", (tenant,))

    def iter_fingerprints(self) -> Iterator[tuple[int, TenantId]]:
        """See :meth:`Store.iter_fingerprints`."""
        for fp, tenant in self._query("SELECT fp, tenant FROM fingerprints ORDER BY fp"):
            yield int(fp), str(tenant)

    def close(self) -> None:
        """See :meth:`Store.close`."""
        with self._lock:
            self._db.close()
