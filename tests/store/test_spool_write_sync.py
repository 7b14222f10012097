"""A segment written by one thread and synced by another (the writer process's two
stages): every record written before a sync is in a segment that sync covered, segments
roll over under both, and a segment whose sync failed is never reported durable.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from kairo_guard.store.spool import encode_body, read_segment, segments
from kairo_guard.store.spool_append import SegmentAppender


def _records(directory: Path) -> list[bytes]:
    found: list[bytes] = []
    for segment in segments(directory):
        found += [r.body for r in read_segment(segment, 0, 1 << 30).records]
    return found


def test_when_one_thread_writes_and_another_syncs_then_every_record_lands_once(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "spool"
    appender = SegmentAppender(directory, segment_bytes=4096)  # many roll-overs
    bodies = [f"body {i:05d} ".encode() * 8 for i in range(600)]
    done = threading.Event()
    synced: list[tuple[str | None, int]] = []

    def syncer() -> None:
        while not done.is_set():
            synced.append(appender.sync())
        synced.append(appender.sync())

    thread = threading.Thread(target=syncer)
    thread.start()
    written = [appender.write([encode_body("acme", "", body)]) for body in bodies]
    done.set()
    thread.join()
    appender.close()
    assert all(error is None for error, _ in written + synced)
    assert [segment for _, segment in written] == sorted(segment for _, segment in written)
    assert written[-1][1] > 10  # it rolled over many times
    assert max(covers for _, covers in synced) == written[-1][1]
    assert _records(directory) == bodies


def test_when_a_sync_fails_then_the_segment_is_ended_and_the_failure_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "spool"
    appender = SegmentAppender(directory)
    error, first = appender.write([encode_body("acme", "", b"first")])
    assert error is None

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    failure, covers = appender.sync()
    assert failure is not None
    assert "Input/output error" in failure
    assert covers == first
    monkeypatch.undo()
    error, second = appender.write([encode_body("acme", "", b"second")])
    assert (error, second) == (None, first + 1)  # a new segment: the failed one ended
    assert appender.sync() == (None, second)
    appender.close()


def test_when_nothing_is_written_then_no_segment_is_made(tmp_path: Path) -> None:
    appender = SegmentAppender(tmp_path / "spool")
    assert appender.append([]) is None
    assert segments(tmp_path / "spool") == []
