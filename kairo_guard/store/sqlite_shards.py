"""The ``shards`` table: vetted shards of operator data and anonymized telemetry.

:class:`ShardTables` implements :class:`~kairo_guard.store.base.ShardStore` for
:class:`~kairo_guard.store.sql_store.SQLStore` (a mixin over its ``db``), in SQL both
backends run; :data:`SHARD_SCHEMA` is the table's SQLite schema.
"""

from __future__ import annotations

from kairo_guard.store.base import ShardRow
from kairo_guard.store.sql import Database

SHARD_SCHEMA = """
CREATE TABLE IF NOT EXISTS shards (
    id TEXT PRIMARY KEY,
    manifest BLOB NOT NULL,
    signature BLOB NOT NULL,
    digests BLOB NOT NULL,
    fingerprints BLOB NOT NULL
);
"""


class ShardTables:
    """Shards, kept as their signed bytes (the store is not trusted for integrity)."""

    db: Database

    def add_shard(self, row: ShardRow) -> None:
        """See :meth:`~kairo_guard.store.base.ShardStore.add_shard`."""
        with self.db.write() as db:
            db.execute(
                "INSERT INTO shards (id, manifest, signature, digests, fingerprints)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (row.shard_id, row.manifest, row.signature, row.digests, row.fingerprints),
            )

    def get_shard(self, shard_id: str) -> ShardRow | None:
        """See :meth:`~kairo_guard.store.base.ShardStore.get_shard`."""
        rows = self.db.query(
            "SELECT id, manifest, signature, digests, fingerprints FROM shards WHERE id = ?",
            (shard_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return ShardRow(str(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3]), bytes(r[4]))

    def shard_ids(self) -> list[str]:
        """See :meth:`~kairo_guard.store.base.ShardStore.shard_ids`."""
        order = self.db.dialect.insertion_order
        return [str(r[0]) for r in self.db.query(f"SELECT id FROM shards ORDER BY {order}")]  # noqa: S608 - a column name

    def fingerprint_position(self) -> int:
        """See :meth:`~kairo_guard.store.base.ShardStore.fingerprint_position`."""
        rows = self.db.query("SELECT COALESCE(MAX(seq), 0) FROM fingerprint_log")
        return int(rows[0][0])
