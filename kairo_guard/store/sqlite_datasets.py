"""The ``datasets`` and ``models`` tables: tenant fine-tune sets and their models.

:class:`DatasetTables` implements :class:`~kairo_guard.store.base.DatasetStore` for
:class:`~kairo_guard.store.sql_store.SQLStore` (a mixin over its ``db``), in SQL both
backends run; :data:`DATASET_SCHEMA` is the tables' SQLite schema (PostgreSQL's is in
:mod:`.postgres_schema`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kairo_guard.core.types import TenantId
from kairo_guard.store.base import MODEL_PENDING_DELETION, DatasetInfo, ModelInfo
from kairo_guard.store.sql import Database

DATASET_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    path TEXT NOT NULL,
    record_count INTEGER NOT NULL,
    created_at REAL NOT NULL,
    agreement_id TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS datasets_tenant ON datasets (tenant);
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY,
    owner TEXT,
    dataset_id TEXT,
    manifest_digest TEXT,
    sink TEXT,
    registered_at REAL NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS models_owner ON models (owner);
"""

_DATASET_COLUMNS = (
    "id, tenant, path, record_count, created_at, agreement_id, manifest_digest, status"
)
_MODEL_COLUMNS = "model_id, owner, dataset_id, registered_at, status, manifest_digest, sink"


def _dataset(r: tuple[Any, ...]) -> DatasetInfo:
    return DatasetInfo(
        id=str(r[0]),
        tenant=str(r[1]),
        path=Path(r[2]),
        record_count=int(r[3]),
        created_at=float(r[4]),
        agreement_id=str(r[5]),
        manifest_digest=str(r[6]),
        status=str(r[7]),
    )


def _model(r: tuple[Any, ...]) -> ModelInfo:
    return ModelInfo(
        model_id=str(r[0]),
        owner=None if r[1] is None else str(r[1]),
        dataset=None if r[2] is None else str(r[2]),
        registered_at=float(r[3]),
        status=str(r[4]),
        manifest_digest=None if r[5] is None else str(r[5]),
        sink=None if r[6] is None else str(r[6]),
    )


class DatasetTables:
    """The :class:`~kairo_guard.store.base.DatasetStore` (mixed into ``SQLStore``)."""

    db: Database

    def add_dataset(self, info: DatasetInfo) -> None:
        """See :meth:`~kairo_guard.store.base.DatasetStore.add_dataset`."""
        self.db.query(
            f"INSERT INTO datasets ({_DATASET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - constant columns
            (
                info.id,
                info.tenant,
                str(info.path),
                info.record_count,
                info.created_at,
                info.agreement_id,
                info.manifest_digest,
                info.status,
            ),
        )

    def update_dataset(self, dataset_id: str, *, record_count: int, manifest_digest: str) -> None:
        """See :meth:`~kairo_guard.store.base.DatasetStore.update_dataset`."""
        self.db.query(
            "UPDATE datasets SET record_count = ?, manifest_digest = ? WHERE id = ?",
            (record_count, manifest_digest, dataset_id),
        )

    def list_datasets(self, tenant: TenantId | None = None) -> list[DatasetInfo]:
        """See :meth:`~kairo_guard.store.base.DatasetStore.list_datasets`."""
        sql = f"SELECT {_DATASET_COLUMNS} FROM datasets"  # noqa: S608 - constant columns
        params: tuple[object, ...] = ()
        if tenant is not None:
            sql += " WHERE tenant = ?"
            params = (tenant,)
        return [_dataset(r) for r in self.db.query(sql + " ORDER BY created_at, id", params)]

    def get_dataset(self, dataset_id: str) -> DatasetInfo | None:
        """See :meth:`~kairo_guard.store.base.DatasetStore.get_dataset`."""
        rows = self.db.query(
            f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE id = ?",  # noqa: S608 - constant columns
            (dataset_id,),
        )
        return _dataset(rows[0]) if rows else None

    def delete_dataset_rows(self, tenant: TenantId) -> int:
        """See :meth:`~kairo_guard.store.base.DatasetStore.delete_dataset_rows`."""
        return self.db.count("DELETE FROM datasets WHERE tenant = ?", (tenant,))

    def add_model(self, info: ModelInfo) -> None:
        """See :meth:`~kairo_guard.store.base.DatasetStore.add_model`."""
        self.db.query(
            f"INSERT INTO models ({_MODEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - constant columns
            (
                info.model_id,
                info.owner,
                info.dataset,
                info.registered_at,
                info.status,
                info.manifest_digest,
                info.sink,
            ),
        )

    def get_model(self, model_id: str) -> ModelInfo | None:
        """See :meth:`~kairo_guard.store.base.DatasetStore.get_model`."""
        rows = self.db.query(
            f"SELECT {_MODEL_COLUMNS} FROM models WHERE model_id = ?",  # noqa: S608 - constant columns
            (model_id,),
        )
        return _model(rows[0]) if rows else None

    def list_models(self, owners: tuple[str, ...] | None = None) -> list[ModelInfo]:
        """See :meth:`~kairo_guard.store.base.DatasetStore.list_models`."""
        sql = f"SELECT {_MODEL_COLUMNS} FROM models"  # noqa: S608 - constant columns
        params: tuple[object, ...] = ()
        if owners is not None:
            if not owners:
                return []
            sql += f" WHERE owner IN ({','.join('?' * len(owners))})"
            params = owners
        return [_model(r) for r in self.db.query(sql + " ORDER BY registered_at, model_id", params)]

    def mark_models_for_deletion(self, tenant: TenantId, replacement: str) -> int:
        """See :meth:`~kairo_guard.store.base.DatasetStore.mark_models_for_deletion`."""
        # the tenant id inside the model's own name ("acme-support-v1") goes too
        return self.db.count(
            "UPDATE models SET status = ?, owner = ?, model_id = replace(model_id, ?, ?)"
            " WHERE owner = ?",
            (MODEL_PENDING_DELETION, replacement, tenant, replacement, tenant),
        )
