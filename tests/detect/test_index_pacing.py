"""The indexer process defers passes while ingestion is busy, and stops deferring as
soon as a check waits, the backlog is large, ingestion pauses or a body waited too long.

A real spool directory (records written with ``SegmentAppender``); time is a clock the
test moves; the "other process" holding the indexer lock is a second open lock.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kairo_guard.core.exceptions import IndexLagging
from kairo_guard.detect.indexer import wait_indexed
from kairo_guard.detect.pacing import MAX_DEFER_SECONDS, QUIET_SECONDS, IndexPacing, wanted_at
from kairo_guard.store.spool import (
    SegmentAppender,
    encode_body,
    indexer_lock,
    segments,
    set_indexed_offset,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _spool(directory: Path, appender: SegmentAppender, n: int = 1) -> None:
    assert appender.append([encode_body("acme", "", b"x" * 200) for _ in range(n)]) is None


@pytest.fixture
def spool(tmp_path: Path) -> tuple[Path, SegmentAppender]:
    directory = tmp_path / "spool"
    return directory, SegmentAppender(directory, sync=False)


def test_when_ingestion_keeps_spooling_then_passes_wait_until_it_pauses(
    spool: tuple[Path, SegmentAppender],
) -> None:
    directory, appender = spool
    clock = Clock()
    pacing = IndexPacing(directory, 4 << 30, clock=clock)
    assert not pacing.due()  # nothing to index
    for _ in range(5):  # a body every 0.1 s: busy
        _spool(directory, appender)
        assert not pacing.due()
        clock.now += 0.1
    clock.now += QUIET_SECONDS  # nothing new since: ingestion paused
    assert pacing.due()


def test_when_a_body_waited_the_longest_deferral_then_a_pass_runs_under_load(
    spool: tuple[Path, SegmentAppender],
) -> None:
    directory, appender = spool
    clock = Clock()
    pacing = IndexPacing(directory, 4 << 30, clock=clock)
    waited = 0.0
    while waited < MAX_DEFER_SECONDS:
        _spool(directory, appender)
        assert not pacing.due()
        clock.now += 0.1
        waited += 0.1
    _spool(directory, appender)
    assert pacing.due()


def test_when_the_backlog_reaches_a_quarter_of_the_limit_then_a_pass_runs(
    spool: tuple[Path, SegmentAppender],
) -> None:
    directory, appender = spool
    clock = Clock()
    pacing = IndexPacing(directory, 40_000, clock=clock)  # defers up to 10,000 bytes
    _spool(directory, appender, 10)
    assert not pacing.due()
    clock.now += 0.01
    _spool(directory, appender, 40)
    assert pacing.due()


def test_when_a_check_waits_then_the_next_pass_is_due_at_once(
    spool: tuple[Path, SegmentAppender],
) -> None:
    directory, appender = spool
    clock = Clock()
    pacing = IndexPacing(directory, 4 << 30, clock=clock)
    _spool(directory, appender)
    assert not pacing.due()
    started = time.time()
    pacing.passed(started - 1)  # a pass that started before the check asked
    # the indexer process holds the lock: the check asks it, then gives up (bound)
    with indexer_lock(directory, wait=True), pytest.raises(IndexLagging):
        wait_indexed(_indexer_of(directory), 0.05)
    assert wanted_at(directory) >= started - 1
    clock.now += 0.01
    _spool(directory, appender)  # still busy: only the check makes it due
    assert pacing.due()
    pacing.passed(time.time() + 1)  # a pass that started after it asked serves it
    clock.now += 0.01
    _spool(directory, appender)
    assert pacing.due()  # catching up: due until the backlog is empty
    _index_all(directory)
    assert not pacing.due()
    clock.now += 0.01
    _spool(directory, appender)  # busy again, nobody asks: deferred again
    assert not pacing.due()


def test_when_a_pass_is_due_then_passes_stay_due_until_the_backlog_is_empty(
    spool: tuple[Path, SegmentAppender],
) -> None:
    directory, appender = spool
    clock = Clock()
    pacing = IndexPacing(directory, 4 << 30, clock=clock)
    _spool(directory, appender)
    assert not pacing.due()  # it just grew
    clock.now += QUIET_SECONDS
    assert pacing.due()
    for _ in range(3):  # ingestion resumes while the indexer catches up
        clock.now += 0.05
        _spool(directory, appender)
        assert pacing.due()
    _index_all(directory)
    assert not pacing.due()


def _index_all(directory: Path) -> None:
    for segment in segments(directory):
        set_indexed_offset(segment, segment.stat().st_size)


class _Indexer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def drain(self) -> int:  # pragma: no cover - the lock is never free here
        raise AssertionError("the lock is held by the indexer process")


def _indexer_of(directory: Path) -> Any:
    return _Indexer(directory)
