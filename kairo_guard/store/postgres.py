"""The store of several replicas: PostgreSQL, selected by ``KAIRO_GUARD_DB_URL=postgresql://...``.

:class:`PostgresStore` is the :class:`~kairo_guard.store.sql_store.SQLStore` tables on a
:class:`~kairo_guard.store.postgres_db.PostgresDatabase` (a bounded connection pool),
at the schema of :data:`~kairo_guard.store.postgres_schema.MIGRATIONS`. psycopg (the
``postgres`` extra) is imported only when one is opened.
"""

from __future__ import annotations

from kairo_guard.core.exceptions import ConfigError
from kairo_guard.store.migrations import migrate
from kairo_guard.store.postgres_schema import MIGRATIONS
from kairo_guard.store.sql_store import SQLStore

POSTGRES_EXTRA = "kairo-guard[postgres]"
"""What to install for a PostgreSQL store."""


class PostgresStore(SQLStore):
    """The guard's state in a PostgreSQL schema, shared by every process that opens it.

    Opening migrates the schema (one opener at a time, whatever the number of replicas
    starting together). Every wait is bounded (:mod:`.postgres_db`): an unreachable or
    slow server raises StoreError.

    Args:
        url: ``postgresql://USER@HOST:PORT/DATABASE`` (or ``postgres://``), its query
            passed to libpq but for ``statement_timeout``, ``pool_size`` and
            ``pool_timeout``; the tables go in the first schema of its ``search_path``
            (``options=-csearch_path%3DSCHEMA``).

    Raises:
        ConfigError: a bad URL, or psycopg is not installed.
        StoreError: the server cannot be reached, the schema cannot be migrated, or it
            is newer than this code.
    """

    def __init__(self, url: str) -> None:
        try:
            from kairo_guard.store.postgres_db import PostgresDatabase
        except ImportError as exc:
            raise ConfigError(
                f"a postgresql:// state database needs psycopg ({exc}): "
                f"pip install '{POSTGRES_EXTRA}'"
            ) from exc
        db = PostgresDatabase(url)
        try:
            migrate(db, MIGRATIONS)
        except BaseException:
            db.close()
            raise
        super().__init__(db)
