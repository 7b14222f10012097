"""A synced spool leaves the page cache: both writers tell the kernel to drop the pages
they made durable (nothing in the service reads them again; the indexer reads them back
from the disk). Kept, they filled memory with pages written once, and taking fresh pages
made writes several times dearer (benchmarks/RESULTS.md). Read with mincore(2) on a real
file system; the last, partial page of the open segment stays (it is still appended to).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from page_cache import resident_pages

from kairo_guard import Guard
from kairo_guard.ingest.spool_native import NativeSpoolClient
from kairo_guard.store.spool import encode_body, read_segment, segments
from kairo_guard.store.spool_append import SegmentAppender

BODIES = [os.urandom(50_000) for _ in range(40)]  # about 2 MB: 490 pages


def _cached_and_total(directory: Path) -> tuple[int, int]:
    found = [resident_pages(path) for path in segments(directory)]
    return sum(c for c, _ in found), sum(t for _, t in found)


def _page_cache_applies(directory: Path) -> None:
    # tmpfs keeps files only in the page cache: there is nothing to drop
    probe = directory / "probe"
    probe.write_bytes(b"x" * 65536)
    cached = resident_pages(probe)[0]
    probe.unlink()
    if not cached:
        pytest.skip("this file system does not keep written pages in the page cache")


def test_a_synced_group_leaves_the_page_cache_but_its_records_read_back(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    appender = SegmentAppender(directory)
    _page_cache_applies(directory)
    for at in range(0, len(BODIES), 10):
        assert appender.append([encode_body("acme", "", b) for b in BODIES[at : at + 10]]) is None
    cached, total = _cached_and_total(directory)
    assert total > 400
    assert cached <= 1  # the open segment's partial last page at most
    appender.close()
    bodies = [r.body for s in segments(directory) for r in read_segment(s, 0, 1 << 30).records]
    assert bodies == BODIES


def test_a_rolled_over_segment_leaves_the_page_cache_whole(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    appender = SegmentAppender(directory, segment_bytes=300_000)
    _page_cache_applies(directory)
    for body in BODIES:
        assert appender.append([encode_body("acme", "", body)]) is None
    assert len(segments(directory)) > 5
    cached, total = _cached_and_total(directory)
    assert total > 400
    assert cached <= 1
    appender.close()


def test_the_native_writer_drops_what_it_synced(guard: Guard) -> None:
    directory = guard.spool_directory
    directory.mkdir(parents=True, exist_ok=True)
    _page_cache_applies(directory)
    client = NativeSpoolClient(directory, guard.sealer)

    async def spool() -> None:
        for at in range(0, len(BODIES), 10):
            await asyncio.gather(
                *(client.record("acme", [b], "api", b"POST /") for b in BODIES[at : at + 10])
            )

    try:
        asyncio.run(spool())
        cached, total = _cached_and_total(directory)
    finally:
        client.close()
    assert total > 400
    assert cached <= 1
    bodies = [r.body for s in segments(directory) for r in read_segment(s, 0, 1 << 30).records]
    assert bodies == BODIES


def test_what_the_indexer_reads_leaves_the_page_cache(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    appender = SegmentAppender(directory, sync=False)  # dirty pages stay cached
    _page_cache_applies(directory)
    assert appender.append([encode_body("acme", "", b) for b in BODIES]) is None
    appender.close()
    (segment,) = segments(directory)
    fd = os.open(segment, os.O_RDONLY)
    try:
        os.fsync(fd)  # written back: now only the reading drops them
    finally:
        os.close(fd)
    assert resident_pages(segment)[0] > 400
    read = read_segment(segment, 0, 1 << 30)
    assert [r.body for r in read.records] == BODIES
    assert resident_pages(segment)[0] <= 1
