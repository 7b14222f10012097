"""A service's shutdown waits for its indexer at most ``limits.shutdown_index_seconds``:
past it the indexer ends after the pass it is in and leaves the rest, durable and
audited, to the next indexer or shared-sink check (a server killed at the end of its
grace period leaves nothing half-done, and nothing accepted escapes the net).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from pathlib import Path

import orjson
import pytest
from kg_testing import make_guard
from procs import child_pids

from kairo_guard import Guard
from kairo_guard.detect.index_service import serve
from kairo_guard.ingest import spooling
from kairo_guard.ingest.spooling import IngestSpool
from kairo_guard.store.spool import LOCK_NAME, backlog, encode_body
from kairo_guard.store.spool_append import SegmentAppender


def _audit(guard: Guard) -> list[dict[str, object]]:
    log = guard.settings.home / "audit" / "audit.jsonl"
    return [orjson.loads(line) for line in log.read_bytes().splitlines()]


def _spool(guard: Guard, n: int) -> None:
    appender = SegmentAppender(guard.spool_directory)
    bodies = [
        encode_body("acme", "", b'{"text": "memo %d %s"}' % (i, b"w" * 1000)) for i in range(n)
    ]
    assert appender.append(bodies) is None
    appender.close()


def test_when_the_shutdown_bound_passes_then_the_indexer_stops_after_its_pass_and_audits_the_rest(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    _spool(guard, 100)
    indexer = guard.indexer
    monkeypatch.setattr(indexer, "_batch_bytes", 4096)
    asked: list[bool] = []

    def abandon() -> bool:  # the bound passes during the first pass
        asked.append(True)
        return len(asked) > 1

    serve(indexer, lambda: True, pass_bytes=20_000, abandon=abandon)
    first = indexer.indexed
    assert 10 <= first < 40  # one pass of about its budget, then it stopped
    pending = backlog(guard.spool_directory).pending_bytes
    assert pending > 0
    left = [e for e in _audit(guard) if e.get("event") == "spool.left_unindexed"]
    assert [e["bytes"] for e in left] == [pending]
    # nothing is lost: the next indexer (or check) indexes the rest
    assert indexer.drain() == 100 - first
    assert backlog(guard.spool_directory).pending_bytes == 0


def test_when_the_service_ends_within_the_bound_then_everything_is_indexed(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    _spool(guard, 100)
    monkeypatch.setattr(guard.indexer, "_batch_bytes", 4096)
    serve(guard.indexer, lambda: True, pass_bytes=20_000)  # the bound never passes
    assert guard.indexer.indexed == 100
    assert not [e for e in _audit(guard) if e.get("event") == "spool.left_unindexed"]


def test_when_the_indexer_process_does_not_finish_within_the_bound_then_close_ends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the indexer process waits for the spool's lock, held here, so it can never drain:
    # close() gives it the bound, then SIGTERM, then (the lock wait outlives SIGTERM) the
    # grace, then SIGKILL; before, close() waited 60 s and left the process running
    home = tmp_path / "state"
    home.mkdir()
    (home / "kairo-guard.toml").write_text("[limits]\nshutdown_index_seconds = 0.5\n")
    monkeypatch.setattr(spooling, "ABANDON_GRACE", 1.0)
    with make_guard(home, pii_gate=False) as guard:
        assert guard.settings.limits.shutdown_index_seconds == 0.5
        guard.spool_directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(guard.spool_directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            spool = IngestSpool(guard, writer="thread", indexer="process")

            async def accept() -> None:
                await spool.record("acme", [b'{"text": "a memo"}'], "http", b"POST /d")

            asyncio.run(accept())
            children = child_pids(os.getpid(), b"kairo_guard.ingest.indexer_main")
            assert len(children) == 1
            started = time.monotonic()
            spool.close()
            took = time.monotonic() - started
        finally:
            os.close(fd)
        assert took < 0.5 + 1.0 + 3.0
        assert child_pids(os.getpid(), b"kairo_guard.ingest.indexer_main") == []
        # what it could not index is still spooled; the next check indexes it
        assert backlog(guard.spool_directory).pending_bytes > 0
        guard.wait_indexed(10)
        assert backlog(guard.spool_directory).pending_bytes == 0


def test_when_the_rest_cannot_be_indexed_yet_then_the_final_drain_ends_and_does_not_spin(
    guard: Guard,
) -> None:
    # a record a live writer has only half written (its segment still locked) cannot be
    # indexed: the unpaced drain of a stopping thread indexes what it can and returns
    # (it would otherwise spin on the half record until the shutdown bound)
    appender = SegmentAppender(guard.spool_directory)
    body = b'{"text": "a memo about the Braga warehouse lease"}'
    assert appender.append([encode_body("acme", "", body)]) is None
    (segment,) = guard.spool_directory.glob("*.kgs")
    half = encode_body("acme", "", body)[:20]
    with segment.open("ab") as fh:
        fh.write(half)
    finished: list[bool] = []

    def stopping() -> None:
        serve(guard.indexer, lambda: True)
        finished.append(True)

    thread = threading.Thread(target=stopping)
    thread.start()
    thread.join(10)
    appender.close()
    assert finished == [True]
    assert guard.indexer.indexed == 1
