"""The ``ingest_coverage`` table: how far each ingestion replica's index has come, so
that a check on one replica waits for what the others accepted.

Every state directory that ingests into a shared store (a replica: its own spool,
named by ``KAIRO_GUARD_AUDIT_LOG_ID``) has a row: ``covered_until``, a time of the
store's clock before which everything the replica accepted is indexed (its indexer
publishes it after each pass that covered a snapshot taken after that time), the
replica's last ``heartbeat``, and ``wanted_at``, when a check elsewhere last asked it to
index now. Times are the database's own clock, so replicas' clocks need not agree.
:class:`CoverageTables` is a mixin of the store (SQL both backends run).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from kairo_guard.store.coverage import ReplicaState

COVERAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS ingest_coverage (
    replica_id TEXT PRIMARY KEY,
    covered_until DOUBLE PRECISION NOT NULL,
    heartbeat DOUBLE PRECISION NOT NULL,
    wanted_at DOUBLE PRECISION NOT NULL
);
"""
_PUBLISH = (
    "INSERT INTO ingest_coverage (replica_id, covered_until, heartbeat, wanted_at)"
    " VALUES (?, ?, ?, 0) ON CONFLICT (replica_id) DO UPDATE SET heartbeat = excluded.heartbeat,"
    " covered_until = CASE WHEN excluded.covered_until > ingest_coverage.covered_until"
    " THEN excluded.covered_until ELSE ingest_coverage.covered_until END"
)


class CoverageTables:
    """Ingestion replicas' index coverage, one row per replica."""

    db: Any  # the store's database (SQLite or PostgreSQL)

    def store_time(self) -> float:
        """The database's clock, in Unix seconds (the one every replica compares with)."""
        return float(self.db.query(f"SELECT {self.db.dialect.now_epoch}")[0][0])

    def publish_coverage(self, replica_id: str, covered_until: float | None) -> float:
        """Record that ``replica_id`` indexed everything it accepted before
        ``covered_until`` (None: only that it is alive; a new replica covers nothing);
        return when a check last asked it to index now (0: never)."""
        with self.db.write() as db:
            now = float(db.execute(f"SELECT {self.db.dialect.now_epoch}").fetchone()[0])
            db.execute(_PUBLISH, (replica_id, covered_until or 0.0, now))
            row = db.execute(
                "SELECT wanted_at FROM ingest_coverage WHERE replica_id = ?", (replica_id,)
            ).fetchone()
        return float(row[0])

    def coverage(self) -> dict[str, float]:
        """Each replica's ``covered_until``."""
        rows = self.db.query("SELECT replica_id, covered_until FROM ingest_coverage")
        return {str(r[0]): float(r[1]) for r in rows}

    def replicas(self) -> list[ReplicaState]:
        """Every known replica, by name."""
        rows = self.db.query(
            "SELECT replica_id, covered_until, heartbeat, wanted_at FROM ingest_coverage"
            " ORDER BY replica_id"
        )
        return [ReplicaState(str(r[0]), float(r[1]), float(r[2]), float(r[3])) for r in rows]

    def want_coverage(self, replica_ids: Collection[str], at: float) -> None:
        """Ask the replicas to index now (their indexers stop deferring)."""
        for replica_id in replica_ids:
            self.db.count(
                "UPDATE ingest_coverage SET wanted_at = ? WHERE replica_id = ? AND wanted_at < ?",
                (at, replica_id, at),
            )

    def retire_replica(self, replica_id: str) -> bool:
        """Forget a replica that is gone for good (its spool indexed or lost): checks
        stop waiting for it. Return whether it was known."""
        found = self.db.count("DELETE FROM ingest_coverage WHERE replica_id = ?", (replica_id,))
        return bool(found)
