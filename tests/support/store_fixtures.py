"""Store fixtures (a pytest plugin of tests/conftest.py): the same contract tests on each
backend, each test on a fresh store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_backends import fresh_schema, open_url, schema_url

from kairo_guard.store.sql_store import SQLStore
from kairo_guard.store.sqlite import DB_FILE_NAME

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema of this test's (dropped after it)."""
    with fresh_schema() as schema:
        yield schema


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store on each backend: SQLite in ``tmp_path``, PostgreSQL in a
    schema of its own (``options=-csearch_path=...``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / DB_FILE_NAME}"
    return schema_url(request.getfixturevalue("pg_schema"))


@pytest.fixture
def store(store_url: str) -> Iterator[SQLStore]:
    """A fresh store on each backend, closed after the test."""
    opened = open_url(store_url)
    try:
        yield opened
    finally:
        opened.close()
