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
from kairo_guard.detect.pacing import (
    MAX_DEFER_SECONDS,
    MAX_MARKS,
    QUIET_SECONDS,
    IndexPacing,
    wanted_at,
)
from kairo_guard.store.spool import encode_body, indexer_lock, segments, set_indexed_offset
from kairo_guard.store.spool_append import SegmentAppender


class Rig:
    """A spool directory, a writer to it, and a clock the test moves for its pacings."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.appender = SegmentAppender(directory, sync=False)
        self.now = 1000.0

    def pacing(self, limit: int = 4 << 30) -> IndexPacing:
        return IndexPacing(self.directory, limit, clock=lambda: self.now)

    def spool(self, n: int = 1) -> None:
        records = [encode_body("acme", "", b"x" * 200) for _ in range(n)]
        assert self.appender.append(records) is None

    def index_all(self) -> None:
        for segment in segments(self.directory):
            set_indexed_offset(segment, segment.stat().st_size)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path / "spool")


def test_when_ingestion_keeps_spooling_then_passes_wait_until_it_pauses(
    rig: Rig,
) -> None:
    pacing = rig.pacing()
    assert not pacing.due()  # nothing to index
    for _ in range(5):  # a body every 0.1 s: busy
        rig.spool()
        assert not pacing.due()
        rig.now += 0.1
    rig.now += QUIET_SECONDS  # nothing new since: ingestion paused
    assert pacing.due()


def test_when_a_body_waited_the_longest_deferral_then_a_pass_runs_under_load(
    rig: Rig,
) -> None:
    pacing = rig.pacing()
    waited = 0.0
    while waited < MAX_DEFER_SECONDS:
        rig.spool()
        assert not pacing.due()
        rig.now += 0.1
        waited += 0.1
    rig.spool()
    assert pacing.due()


def test_when_the_indexer_caught_up_under_load_then_the_age_starts_from_what_is_left(
    rig: Rig,
) -> None:
    # a burst, a pause in which the indexer catches up, and the next burst that starts
    # before the indexer looks again: the backlog it then sees is new, so it must not
    # count the first burst's age against it (which put the indexer in the second
    # burst's way, at full speed, as soon as the first burst was MAX_DEFER_SECONDS old)
    pacing = rig.pacing()
    for _ in range(100):  # 10 s of the first burst
        rig.spool()
        assert not pacing.due()
        rig.now += 0.1
    rig.now += QUIET_SECONDS
    for _ in range(30):  # the pause: it indexes the first burst, pass after pass
        assert pacing.due()
        rig.now += 0.5
    rig.index_all()  # what it held is indexed, and the next burst has begun
    rig.spool()
    waited = 0.0
    while waited < MAX_DEFER_SECONDS - 1:  # the second burst, younger than the bound
        assert not pacing.due()
        rig.now += 0.1
        waited += 0.1
        rig.spool()
    rig.now += 1.5  # its first body has now waited the longest deferral
    rig.spool()
    assert pacing.due()


def test_when_the_backlog_reaches_half_the_limit_then_a_pass_runs(
    rig: Rig,
) -> None:
    pacing = rig.pacing(20_000)  # defers up to 10,000 bytes
    rig.spool(10)
    assert not pacing.due()
    rig.now += 0.01
    rig.spool(40)
    assert pacing.due()


def test_when_a_check_waits_then_the_next_pass_is_due_at_once(
    rig: Rig,
) -> None:
    pacing = rig.pacing()
    rig.spool()
    assert not pacing.due()
    started = time.time()
    pacing.passed(started - 1)  # a pass that started before the check asked
    # the indexer process holds the lock: the check asks it, then gives up (bound)
    with indexer_lock(rig.directory, wait=True), pytest.raises(IndexLagging):
        wait_indexed(_indexer_of(rig.directory), 0.05)
    assert wanted_at(rig.directory) >= started - 1
    rig.now += 0.01
    rig.spool()  # still busy: only the check makes it due
    assert pacing.due()
    pacing.passed(time.time() + 1)  # a pass that started after it asked serves it
    rig.now += 0.01
    rig.spool()
    assert pacing.due()  # catching up: due until the backlog is empty
    rig.index_all()
    assert not pacing.due()
    rig.now += 0.01
    rig.spool()  # busy again, nobody asks: deferred again
    assert not pacing.due()


def test_when_the_backlog_made_a_pass_due_then_passes_stay_due_until_it_is_empty(
    rig: Rig,
) -> None:
    pacing = rig.pacing(20_000)  # defers up to 10,000 bytes
    rig.spool(50)
    assert pacing.due()
    for _ in range(3):  # ingestion goes on while the indexer catches up
        rig.now += 0.05
        rig.spool()
        assert pacing.due()
    rig.index_all()
    assert not pacing.due()


def test_when_a_pause_made_a_pass_due_then_ingestion_resuming_defers_again(
    rig: Rig,
) -> None:
    # a gap between two bursts (a load generator restarting) must not put the indexer
    # in the next burst's way: the pause is a reason only while it lasts
    pacing = rig.pacing()
    rig.spool()
    assert not pacing.due()  # it just grew
    rig.now += QUIET_SECONDS
    assert pacing.due()
    rig.now += 0.05
    rig.spool()  # the next burst
    assert not pacing.due()
    rig.now += QUIET_SECONDS  # paused again
    assert pacing.due()
    rig.index_all()
    assert not pacing.due()


class _Indexer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def drain(self) -> int:  # pragma: no cover - the lock is never free here
        raise AssertionError("the lock is held by the indexer process")


def _indexer_of(directory: Path) -> Any:
    return _Indexer(directory)


def test_when_a_check_waits_long_then_it_asks_the_indexer_again(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An indexer process started after the first request (a restart) still hears it."""
    import kairo_guard.detect.indexer as indexer_module

    asked: list[float] = []
    monkeypatch.setattr(indexer_module, "want_index", lambda d: asked.append(time.monotonic()))
    rig.spool()
    with indexer_lock(rig.directory, wait=True), pytest.raises(IndexLagging):
        wait_indexed(_indexer_of(rig.directory), 2.5)
    assert len(asked) == 3  # at once, then every ASK_EVERY seconds
    assert asked[1] - asked[0] >= 1.0


def test_when_the_indexer_cannot_catch_up_for_long_then_what_it_remembers_stays_bounded(
    rig: Rig,
) -> None:
    # hours of ingestion with passes failing (a store outage) must not grow the pacing's
    # memory without bound, and the age it keeps must not get younger for it
    pacing = rig.pacing()
    for _ in range(3 * MAX_MARKS):
        rig.spool()
        pacing.due()
        rig.now += 0.05
    assert len(pacing._marks) <= MAX_MARKS + 1
    assert pacing._marks[0][0] == 1000.0  # the first body's time is still the bound
    assert pacing.due()  # 150 s of backlog: past MAX_DEFER_SECONDS
