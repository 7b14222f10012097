"""The PostgreSQL store against the machine's real server: a watermark that several
writer processes cannot skip past, and bounded waits (a server that is down, silent or
slow, a pool that is exhausted, is a StoreError within its bound, never a hang and never
an empty answer)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from subprocess import PIPE, Popen

import psycopg
import pytest
from store_backends import PG_SERVER, schema_url

from kairo_guard import StoreError
from kairo_guard.core.exceptions import ConfigError
from kairo_guard.store.postgres import PostgresStore
from kairo_guard.store.postgres_db import PostgresOptions

_SPAN = 10_000_000
"""Writer ``n`` indexes fingerprints from ``n * _SPAN`` on."""
_WRITER = """
import sys
from kairo_guard.store.base import ProvenanceRow
from kairo_guard.store.postgres import PostgresStore

url, first, batches, size = sys.argv[1], *map(int, sys.argv[2:])
store = PostgresStore(url)
print("open", flush=True)
sys.stdin.readline()  # every writer starts at once
for batch in range(batches):
    start = first + batch * size
    pairs = [(fp, "acme") for fp in range(start, start + size)]
    # provenance rows after the fingerprints: the transaction stays open a while after
    # its fingerprints took their positions (where a reader could overtake it)
    rows = [ProvenanceRow(f"d{fp}", "acme", "customer_content", "test", 1, None) for fp, _ in pairs]
    store.record_ingested(pairs, rows)
store.close()
"""


@contextmanager
def _writers(url: str, count: int, batches: int, size: int) -> Iterator[list[Popen[str]]]:
    """``count`` writer processes, each indexing ``batches`` batches of ``size`` new
    fingerprints, started together."""
    with ExitStack() as stack:
        procs = [
            stack.enter_context(
                Popen(
                    [sys.executable, "-c", _WRITER, url, str(n * _SPAN), str(batches), str(size)],
                    stdin=PIPE,
                    stdout=PIPE,
                    text=True,
                )
            )
            for n in range(count)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                assert proc.stdout.readline() == "open\n"
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            yield procs
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()


def test_when_two_processes_index_at_once_then_a_reader_of_the_watermark_misses_nothing(
    pg_schema: str,
) -> None:
    url = schema_url(pg_schema)
    reader = PostgresStore(url)
    batches, size = 150, 40
    seen: list[int] = []
    position, reads_during = 0, 0
    try:
        with _writers(url, 2, batches, size) as writers:
            while any(w.poll() is None for w in writers):
                page, position = reader.fingerprints_since(position, limit=500)
                seen += page
                reads_during += bool(page)
            assert [w.wait(timeout=60) for w in writers] == [0, 0]
        while True:
            page, position = reader.fingerprints_since(position)
            if not page:
                break
            seen += page
        expected = {n * _SPAN + i for n in range(2) for i in range(batches * size)}
        assert reads_during > 10  # the reader did follow the writers while they wrote
        assert len(seen) == len(expected)
        assert sorted(expected - set(seen)) == []
        assert position == reader.fingerprint_position()
    finally:
        reader.close()


@pytest.mark.parametrize(
    "port_of",
    [lambda silent: 1, lambda silent: silent.getsockname()[1]],
    ids=["refused", "never-answers"],
)
def test_when_the_server_cannot_be_reached_then_opening_is_a_store_error_within_the_bound(
    port_of: object, silent_port: socket.socket
) -> None:
    port = port_of(silent_port)  # type: ignore[operator]
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot connect to the state database"):
        PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=2")
    assert time.monotonic() - started < 6


@pytest.fixture
def silent_port() -> Iterator[socket.socket]:
    """A loopback port that accepts connections and never says a word."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


@pytest.fixture
def held(pg_schema: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """Another session of the schema, inside a transaction (to take locks in)."""
    PostgresStore(schema_url(pg_schema)).close()  # the tables
    with psycopg.connect(schema_url(pg_schema), autocommit=True) as conn, conn.transaction():
        yield conn


def test_when_a_statement_waits_past_its_timeout_then_it_is_an_error_not_an_empty_answer(
    pg_schema: str, held: psycopg.Connection[tuple[object, ...]]
) -> None:
    store = PostgresStore(schema_url(pg_schema, statement_timeout=0.3))
    try:
        held.execute("LOCK TABLE fingerprints, fingerprint_log IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(StoreError, match="statement timeout"):
            store.match_fingerprints([1, 2, 3])
        with pytest.raises(StoreError, match="statement timeout"):
            store.fingerprints_since(0)
        assert time.monotonic() - started < 3
    finally:
        store.close()


def test_when_every_pooled_connection_is_busy_then_a_call_fails_after_the_pool_timeout(
    pg_schema: str,
) -> None:
    store = PostgresStore(schema_url(pg_schema, pool_size=1, pool_timeout=0.3))
    try:
        with store.db.write():  # holds the only connection
            started = time.monotonic()
            with pytest.raises(StoreError, match="unavailable"):
                store.match_fingerprints([1])
            assert time.monotonic() - started < 3
        assert store.match_fingerprints([1]) == {}  # given back: the store goes on
    finally:
        store.close()


def test_when_the_search_path_names_no_schema_then_opening_says_so(pg_schema: str) -> None:
    with pytest.raises(StoreError, match="no schema to keep tables in"):
        PostgresStore(schema_url(pg_schema + "_missing"))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("statement_timeout=0", "statement_timeout must be a number of seconds > 0"),
        ("statement_timeout=soon", "statement_timeout must be"),
        ("pool_size=1.5", "pool_size must be a whole number > 0"),
        ("pool_timeout=-1", "pool_timeout must be"),
        ("no_such_parameter=1", "bad KAIRO_GUARD_DB_URL"),
    ],
)
def test_when_the_url_has_a_bad_value_then_it_is_a_config_error(query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PostgresOptions.from_url(f"{PG_SERVER}?{query}")


def test_when_the_url_is_read_then_kairo_guard_keeps_its_own_parameters_and_no_password() -> None:
    options = PostgresOptions.from_url(
        "postgres://kg:s3cret@db.internal:6543/state"
        "?options=-csearch_path%3Dguard&statement_timeout=2.5&pool_size=8&connect_timeout=3"
    )
    assert (options.statement_timeout, options.pool_size) == (2.5, 8)
    assert "statement_timeout" not in options.conninfo
    assert "options=-csearch_path%3Dguard" in options.conninfo
    assert "connect_timeout" not in options.connect_kwargs  # the URL's own 3 s stands
    assert options.display == "postgresql://kg@db.internal:6543/state"
