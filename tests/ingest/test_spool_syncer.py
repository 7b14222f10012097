"""The writer process acks a body only once the sync after its write succeeded: a failed
sync nacks every body of its segment, also one whose batch is queued after the failure;
bodies written to the next segment are acked again.

The writer's syncer stage with a real segment appender; the disk failure is an
``fdatasync`` that raises, as a full or failing disk makes it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from kairo_guard.ingest.spool_main import _Syncer
from kairo_guard.ingest.spool_wire import ack, read_acks
from kairo_guard.store.spool import encode_body
from kairo_guard.store.spool_append import SegmentAppender


def _acks(fd: int) -> dict[int, bool]:
    data = bytearray()
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    return {a.seq: a.ok for a in read_acks(data)}


def test_when_a_sync_fails_then_the_bodies_of_its_segment_are_never_acked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    appender = SegmentAppender(tmp_path / "spool")
    read_end, write_end = os.pipe()
    syncer = _Syncer(appender, write_end)
    digest = "0" * 64

    error, segment = appender.write([encode_body("acme", "", b"one")])
    assert error is None
    real = os.fdatasync
    failed = threading.Event()

    def full(fd: int) -> None:
        failed.set()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    syncer.put([ack(1, digest, "")], None, segment)
    syncer.start()
    assert failed.wait(10)
    monkeypatch.setattr(os, "fdatasync", real)
    syncer.put([ack(2, digest, "")], None, segment)  # written before the failure, late
    error, later = appender.write([encode_body("acme", "", b"three")])
    assert error is None
    assert later > segment
    syncer.put([ack(3, digest, "")], None, later)
    syncer.stop()
    appender.close()
    os.close(write_end)
    assert _acks(read_end) == {1: False, 2: False, 3: True}
