"""What the SQL tables need from a backend: a :class:`Database` to run statements
through, and the :class:`Dialect` of the few statements SQLite and PostgreSQL write
differently.

The table classes (:mod:`.sql_store` and the mixins it is made of: :mod:`.sqlite_datasets`,
:mod:`.sqlite_tenants`, :mod:`.sqlite_shards`, :mod:`.sqlite_anchor`, whose names predate
the second backend) write their statements once, with ``?`` placeholders; a backend's
database (:mod:`.sqlite_db`, :mod:`.postgres_db`) runs them, and turns every error of
its driver into :class:`~kairo_guard.core.exceptions.StoreError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


class Rows(Protocol):
    """The cursor a statement run in a transaction returns."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Transaction(Protocol):
    """A write transaction in progress: statements with ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Rows: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> object: ...


class Database(Protocol):
    """A backend's connection(s): single statements, and write transactions.

    Every method raises :class:`~kairo_guard.core.exceptions.StoreError` (never a
    driver's error) when the database fails.
    """

    @property
    def dialect(self) -> Dialect: ...

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows (none for a statement that returns none)."""
        ...

    def count(self, sql: str, params: Sequence[object]) -> int:
        """Run one changing statement; return how many rows it changed."""
        ...

    def write(self) -> AbstractContextManager[Transaction]:
        """One write transaction, serialized with every other ``write`` on the store:
        committed at the end of the block, rolled back on any error."""
        ...

    def erasing(self) -> AbstractContextManager[None]:
        """Around an erasure: what the backend does so deleted rows do not linger."""
        ...

    def close(self) -> None:
        """Release the connection(s); the database is unusable afterwards."""
        ...


@dataclass(frozen=True)
class Dialect:
    """The statements that differ between SQLite and PostgreSQL."""

    name: str
    insertion_order: str
    """The column that orders a table's rows as they were inserted."""
    insert_fingerprints: str
    """Adds ``(fingerprint, tenant)`` pairs, leaving out those already indexed."""
    fingerprint_arrays: bool
    """True: :attr:`insert_fingerprints` takes every pair at once, as two arrays
    (fingerprints, tenants); False: it runs once per pair."""
    now_epoch: str
    """An expression of the database's clock in Unix seconds."""

    def add_fingerprints(self, tx: Transaction, pairs: Sequence[tuple[int, str]]) -> None:
        """Add ``(fingerprint, tenant)`` pairs in ``tx`` (idempotent)."""
        if not pairs:
            return
        if self.fingerprint_arrays:
            fps, tenants = [fp for fp, _ in pairs], [tenant for _, tenant in pairs]
            tx.execute(self.insert_fingerprints, (fps, tenants))
        else:
            tx.executemany(self.insert_fingerprints, pairs)


SQLITE = Dialect(
    name="sqlite",
    insertion_order="rowid",
    insert_fingerprints="INSERT OR IGNORE INTO fingerprints (fp, tenant) VALUES (?, ?)",
    fingerprint_arrays=False,
    now_epoch="(julianday('now') - 2440587.5) * 86400.0",
)
POSTGRES = Dialect(
    name="postgresql",
    insertion_order="seq",  # an identity column (PostgreSQL tables have no rowid)
    # one statement for the batch: a statement a pair would fire the log's statement
    # triggers (postgres_schema) once per pair
    insert_fingerprints=(
        "INSERT INTO fingerprints (fp, tenant)"
        " SELECT * FROM unnest(?::bigint[], ?::text[]) ON CONFLICT DO NOTHING"
    ),
    fingerprint_arrays=True,
    now_epoch="EXTRACT(EPOCH FROM clock_timestamp())::double precision",
)
