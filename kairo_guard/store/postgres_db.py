"""A pool of PostgreSQL connections with bounded waits: queries, counts and write
transactions, in the shape of :class:`~kairo_guard.store.sqlite_db.SQLiteDatabase`.

:class:`PostgresDatabase` is the :class:`~kairo_guard.store.sql.Database` of
:class:`~kairo_guard.store.postgres.PostgresStore`. It runs the tables' ``?`` statements
(as psycopg's ``%s``), and every wait is bounded: connecting (``connect_timeout``), each
statement and each lock wait (``statement_timeout``), waiting for a pooled connection
(``pool_timeout``), a server that stops answering (TCP keepalives). Every psycopg error
leaves it as :class:`~kairo_guard.core.exceptions.StoreError`: a database that is down
or slow is an error, never an empty answer. Needs the ``postgres`` extra.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from kairo_guard.core.exceptions import ConfigError, StoreError
from kairo_guard.store.sql import POSTGRES, Dialect, Rows

DEFAULT_CONNECT_TIMEOUT = 5
"""Seconds to connect (libpq's ``connect_timeout``, unless the URL sets it)."""
DEFAULT_STATEMENT_TIMEOUT = 10.0
"""Seconds a statement, or a wait for a lock, may last (``statement_timeout=``)."""
DEFAULT_POOL_SIZE = 4
"""Connections a process keeps open at most (``pool_size=``)."""
DEFAULT_POOL_TIMEOUT = 5.0
"""Seconds a call waits for a free connection (``pool_timeout=``)."""
# What a dead server costs at most while a statement waits for its answer: keepalive
# probes after 10 s of silence, 3 of them 5 s apart, and unacknowledged data given up
# after 30 s (libpq parameters; a URL that sets one keeps its own).
_LIBPQ_DEFAULTS = {
    "application_name": "kairo-guard",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
_SESSION = (
    "SELECT set_config('statement_timeout', %s, false),"
    " set_config('idle_in_transaction_session_timeout', %s, false)"
)


@dataclass(frozen=True)
class PostgresOptions:
    """A ``postgresql://`` URL, split into what libpq reads and what kairo-guard reads."""

    conninfo: str
    """The URL without kairo-guard's own query parameters (what libpq is given)."""
    display: str
    """The URL without its password or query: for messages."""
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    pool_size: int = DEFAULT_POOL_SIZE
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    connect_kwargs: dict[str, Any] = field(default_factory=dict)
    """libpq defaults the URL does not set, and ``autocommit``."""

    @classmethod
    def from_url(cls, url: str) -> PostgresOptions:
        """Read ``postgresql://`` (or ``postgres://``) ``USER@HOST:PORT/DATABASE?...``.

        The query may set kairo-guard's ``statement_timeout`` and ``pool_timeout``
        (seconds) and ``pool_size``; every other parameter goes to libpq as it is
        (``connect_timeout``, ``sslmode``, ``options=-csearch_path%3DSCHEMA``, ...).

        Raises:
            ConfigError: not such a URL, or a bad value.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"not a PostgreSQL URL (postgresql://...): scheme {parts.scheme!r}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in ("statement_timeout", "pool_size", "pool_timeout")}
        rest = [(k, v) for k, v in query if k not in ours]
        conninfo = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.Error as exc:
            raise ConfigError(f"bad KAIRO_GUARD_DB_URL: {exc}") from None
        defaults = {"connect_timeout": str(DEFAULT_CONNECT_TIMEOUT), **_LIBPQ_DEFAULTS}
        user, host, port, dbname = (
            params.get(k) or default
            for k, default in (("user", ""), ("host", "localhost"), ("port", 5432), ("dbname", ""))
        )
        return cls(
            conninfo=conninfo,
            display=f"postgresql://{user}@{host}:{port}/{dbname}",
            statement_timeout=_positive(ours, "statement_timeout", DEFAULT_STATEMENT_TIMEOUT),
            pool_size=int(_positive(ours, "pool_size", DEFAULT_POOL_SIZE)),
            pool_timeout=_positive(ours, "pool_timeout", DEFAULT_POOL_TIMEOUT),
            connect_kwargs={
                "autocommit": True,
                **{k: v for k, v in defaults.items() if k not in params},
            },
        )


def _positive(given: dict[str, str], name: str, default: float) -> float:
    """The URL's value of ``name`` (an int if ``default`` is one), or ``default``."""
    if name not in given:
        return default
    kind = type(default)
    try:
        value = kind(given[name])
    except ValueError:
        value = kind(0)
    if not 0 < value < float("inf"):
        what = "a whole number" if kind is int else "a number of seconds"
        raise ConfigError(f"KAIRO_GUARD_DB_URL: {name} must be {what} > 0, not {given[name]!r}")
    return value


class PostgresDatabase:
    """A PostgreSQL database through a bounded pool of autocommit connections.

    Write transactions (:meth:`write`) are serialized across every process on the same
    schema by a transaction-level advisory lock, as SQLite's write lock serializes them:
    the tables' read-then-write transactions (an agreement granted once per reference,
    the fingerprint scheme claimed once, migrations) rely on it.

    Args:
        url: a ``postgresql://`` URL (:meth:`PostgresOptions.from_url`).

    Raises:
        ConfigError: a bad URL.
        StoreError: the server cannot be reached within the bounds, or the URL's
            ``search_path`` names no schema that exists.
    """

    dialect: Dialect = POSTGRES

    def __init__(self, url: str) -> None:
        self.options = options = PostgresOptions.from_url(url)
        self.lock_key = self._lock_key()
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            options.conninfo,
            kwargs=options.connect_kwargs,
            min_size=1,
            max_size=options.pool_size,
            timeout=options.pool_timeout,
            configure=self._configure,
            name="kairo-guard",
            open=False,
        )
        self.pool.open(wait=False)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Every connection's session: statement and idle-in-transaction bounds."""
        ms = str(round(self.options.statement_timeout * 1000))
        conn.execute(_SESSION, (ms, ms))

    def _lock_key(self) -> int:
        """Connect once (for the server's own error if it cannot be reached) and return
        the advisory lock key of the schema the tables live in."""
        options = self.options
        try:
            with psycopg.connect(options.conninfo, **options.connect_kwargs) as conn:
                self._configure(conn)
                row = conn.execute("SELECT current_schema()").fetchone()
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to the state database {options.display}: {exc}"
            ) from exc
        if row is None or row[0] is None:
            raise StoreError(
                f"the state database {options.display} has no schema to keep tables in: "
                "create the schema its search_path names (options=-csearch_path=...)"
            )
        digest = hashlib.sha256(f"kairo-guard:{row[0]}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except PoolTimeout as exc:
            raise StoreError(f"state database {self.options.display} unavailable: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"state database error: {exc}") from exc

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on its own; return its rows."""
        with self._errors(), self.pool.connection() as conn:
            cursor = conn.execute(*_statement(sql, params))
            return cursor.fetchall() if cursor.description is not None else []

    def count(self, sql: str, params: Sequence[object]) -> int:
        """Run one changing statement on its own; return how many rows it changed."""
        with self._errors(), self.pool.connection() as conn:
            return conn.execute(*_statement(sql, params)).rowcount

    @contextlib.contextmanager
    def write(self) -> Iterator[_Transaction]:
        """One write transaction, after every other one on the schema (the advisory
        lock, waited for within ``statement_timeout``): committed at the end of the
        block, or rolled back (on any error) and, for a database error, raised as
        StoreError."""
        with self._errors(), self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))
            yield _Transaction(conn)

    def erasing(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to add: PostgreSQL keeps deleted row versions until (auto)vacuum
        reclaims them, and no statement overwrites them at once."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Close every connection; the database is unusable afterwards."""
        self.pool.close(timeout=self.options.pool_timeout)


class _Transaction:
    """A transaction in progress, taking the tables' ``?`` statements."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows:
        return self.conn.execute(*_statement(sql, parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(_placeholders(sql), parameters)


def _statement(sql: str, params: Sequence[object]) -> tuple[str, tuple[object, ...] | None]:
    """psycopg's arguments for a ``?`` statement (none: run as it is, a script too)."""
    return (_placeholders(sql), tuple(params)) if params else (sql, None)


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (and a literal ``%`` escaped)."""
    return sql.replace("%", "%%").replace("?", "%s")
