"""Test helpers for the two store backends: a fresh PostgreSQL schema, a store by URL.

The PostgreSQL server is the real one this machine and CI run (127.0.0.1:5432, trust
auth, user ``postgres``, database ``test``). It is never skipped: if it cannot be
reached, the tests that need it fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from kairo_guard.store.postgres import PostgresStore
from kairo_guard.store.sql_store import SQLStore
from kairo_guard.store.sqlite import SQLiteStore

__all__ = ["PG_SERVER", "fresh_schema", "open_url", "pg_admin", "schema_url"]

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
"""The machine's PostgreSQL (set up before any session or CI run)."""


@contextmanager
def pg_admin() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to :data:`PG_SERVER`, outside any store."""
    with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5) as conn:
        yield conn


def schema_url(schema: str, **query: object) -> str:
    """The URL of a store kept in ``schema`` of :data:`PG_SERVER`."""
    extra = "".join(f"&{key}={value}" for key, value in query.items())
    return f"{PG_SERVER}?options=-csearch_path%3D{schema}{extra}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A new, empty schema of :data:`PG_SERVER` (its name), dropped afterwards."""
    schema = f"kg_test_{uuid.uuid4().hex[:16]}"
    with pg_admin() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with pg_admin() as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def open_url(url: str) -> SQLStore:
    """Open the store a ``sqlite:///PATH`` or ``postgresql://`` URL names."""
    if url.startswith("sqlite:///"):
        return SQLiteStore(Path(url.removeprefix("sqlite:///")))
    return PostgresStore(url)
