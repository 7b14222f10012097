"""Reading past a damaged record: the next valid record is found wherever its header
bytes happen to look like a record's kind byte."""

from __future__ import annotations

import struct
from pathlib import Path

from kairo_guard.store.spool import encode_body, read_segment, resync


def _record_with_01_in_header(tenant: str) -> bytes:
    # a record whose length or CRC holds a 0x01 byte (before its kind byte), which a
    # scan for the kind byte meets first
    for i in range(10_000):
        record = encode_body(tenant, "", f"body {i} ".encode() * 20)
        if 1 in record[1:8]:
            return record
    raise AssertionError("no record with a 0x01 header byte")


def test_when_a_record_is_damaged_then_reading_resumes_at_the_next_whatever_its_header_bytes(
    tmp_path: Path,
) -> None:
    first = encode_body("acme", "", b"first body")
    damaged = bytearray(encode_body("acme", "", b"second body, damaged"))
    damaged[-3] ^= 0xFF
    third = _record_with_01_in_header("acme")
    segment = tmp_path / "seg.kgs"
    segment.write_bytes(first + bytes(damaged) + third)

    read = read_segment(segment, 0, 1 << 20)
    assert [r.body for r in read.records] == [b"first body"]
    assert read.tail  # stopped at the damaged record

    found = resync(segment, read.stop)
    assert found == len(first) + len(damaged)
    after = read_segment(segment, found, 1 << 20)
    assert [r.body for r in after.records] == [third[9 + 2 + 4 + 2 + 2 :]]


def test_when_nothing_valid_follows_the_damage_then_there_is_nothing_to_resume_at(
    tmp_path: Path,
) -> None:
    damaged = bytearray(encode_body("acme", "", b"only body"))
    damaged[-1] ^= 0xFF
    segment = tmp_path / "seg.kgs"
    segment.write_bytes(bytes(damaged) + struct.pack("<II", 5, 0) + b"\x01ab")
    assert resync(segment, 0) is None
