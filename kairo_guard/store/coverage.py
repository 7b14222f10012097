"""What the store keeps of ingestion replicas' index coverage (the protocol; the tables
are :mod:`.sqlite_coverage`, the waiting :mod:`kairo_guard.detect.coverage`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple, Protocol


class ReplicaState(NamedTuple):
    """One ingestion replica as the store knows it (times in the database's clock)."""

    replica_id: str
    covered_until: float
    """Everything the replica accepted before this is indexed (0: nothing yet)."""
    heartbeat: float
    """When the replica's indexer last published (it does every fraction of a second
    while it runs)."""
    wanted_at: float
    """When a check elsewhere last asked it to index now (0: never)."""


class CoverageStore(Protocol):
    """Each ingestion replica's index coverage, in the database's clock."""

    def store_time(self) -> float:
        """The database's clock in Unix seconds."""
        ...

    def publish_coverage(self, replica_id: str, covered_until: float | None) -> float:
        """Record that the replica indexed everything it accepted before
        ``covered_until`` (None: only that it is alive); return when a check last asked
        it to index now (0: never)."""
        ...

    def coverage(self) -> dict[str, float]:
        """Each replica's ``covered_until``."""
        ...

    def replicas(self) -> list[ReplicaState]:
        """Every known replica, by name."""
        ...

    def want_coverage(self, replica_ids: Collection[str], at: float) -> None:
        """Ask replicas to index now."""
        ...

    def retire_replica(self, replica_id: str) -> bool:
        """Forget a replica gone for good; return whether it was known."""
        ...
