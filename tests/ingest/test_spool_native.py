"""The native spool writer: a C thread that digests, seals, frames and group-commits.

Real threads, a real spool directory and the real seal codec: what the thread writes is
read back by the spool reader the indexer uses, its seals are opened by the codec and
compared with the Python sealer's, and its failures reach the caller as StoreError.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
import time
from pathlib import Path

import pytest

import kairo_guard.ingest._spoolw as native_writer
from kairo_guard import Guard
from kairo_guard.core.exceptions import StoreError
from kairo_guard.core.types import DataClass, TenantId
from kairo_guard.ingest import spool_native
from kairo_guard.ingest.spool_native import NativeSpoolClient
from kairo_guard.store.spool import SpoolRecord, read_segment, segments

ACME = TenantId("acme")


def test_the_native_writer_is_built_on_a_machine_with_gcc_openssl_and_zlib() -> None:
    # CI builds it (hatch_build.py); without it the middleware silently uses the slower
    # writer process, which these tests would then not cover
    assert spool_native.AVAILABLE


def _records(directory: Path) -> list[SpoolRecord]:
    found: list[SpoolRecord] = []
    for segment in segments(directory):
        read = read_segment(segment, 0, 1 << 30)
        assert not read.tail  # every record whole, its CRC right
        found += read.records
    return found


async def _spool(
    client: NativeSpoolClient, items: list[tuple[str, bytes, str, bytes]]
) -> list[tuple[str, str]]:
    return await asyncio.gather(
        *(client.record(tenant, [body], source, meta) for tenant, body, source, meta in items)
    )


def test_bodies_are_digested_sealed_and_framed_as_the_python_writer_would(guard: Guard) -> None:
    client = NativeSpoolClient(guard.spool_directory, guard.sealer)
    bodies = [b"", b"x", os.urandom(100), os.urandom(70_000), "Zoë's memo".encode() * 999]
    items = [("acme", body, "api", b"POST /documents") for body in bodies]
    try:
        results = asyncio.run(_spool(client, [*items, ("ümlaut-co", b"{}", "", b"")]))
    finally:
        client.close()
    for body, (digest, seal) in zip(bodies, results, strict=False):
        assert digest == hashlib.sha256(body).hexdigest()
        label = guard.open_seal(seal)  # the codec verifies the thread's HMAC
        assert (label.digest, label.tenant, label.data_class) == (
            digest,
            "acme",
            DataClass.CUSTOMER_CONTENT,
        )
        assert seal == guard.sealer.seal_spooled(
            digest, tenant=ACME, source="api", created_at=label.created_at
        )
    assert results[-1] == (hashlib.sha256(b"{}").hexdigest(), "")  # index only: no seal
    records = _records(guard.spool_directory)
    assert [r.body for r in records] == [*bodies, b"{}"]
    assert [r.seal for r in records] == [seal for _, seal in results]
    assert [r.tenant for r in records] == ["acme"] * len(bodies) + ["ümlaut-co"]
    assert records[0].meta == b"POST /documents"


def test_every_length_of_body_gets_the_crc_zlib_computes(guard: Guard) -> None:
    """The writer's CRC (carry-less multiplication where the processor has it, zlib for
    the tail) equals zlib.crc32 for bodies of every length around its 16- and 64-byte
    blocks, and for large ones: the reader checks each record with zlib."""
    client = NativeSpoolClient(guard.spool_directory, guard.sealer)
    bodies = [os.urandom(n) for n in [*range(200), 1023, 65_536, 65_537, 65_551, 1 << 20]]
    try:
        asyncio.run(_spool(client, [("acme", body, "api", b"") for body in bodies]))
    finally:
        client.close()
    assert [r.body for r in _records(guard.spool_directory)] == bodies


def test_a_long_request_line_is_cut_to_4096_bytes_in_the_record(guard: Guard) -> None:
    client = NativeSpoolClient(guard.spool_directory, guard.sealer)
    try:
        asyncio.run(_spool(client, [("acme", b"body", "api", b"POST /" + b"a" * 9000)]))
    finally:
        client.close()
    (record,) = _records(guard.spool_directory)
    assert record.meta == (b"POST /" + b"a" * 9000)[:4096]


class Done:
    """A future as the writer sees one: it records what it is completed with."""

    def __init__(self) -> None:
        self.result: object = None

    def done(self) -> bool:
        return False

    def set_result(self, result: object) -> None:
        self.result = result

    def set_exception(self, exc: BaseException) -> None:
        self.result = exc


class ClosedLoopFuture(Done):
    """A future whose event loop is closed: completing it raises."""

    def set_result(self, result: object) -> None:
        raise RuntimeError("Event loop is closed")


def test_full_segments_are_ended_and_every_record_stays_whole(guard: Guard) -> None:
    directory = guard.spool_directory
    directory.mkdir(parents=True, exist_ok=True)
    writer = native_writer.Writer(str(directory), 1, True, StoreError)  # a segment a pass
    futures = []
    for i in range(5):
        future = Done()
        writer.submit(future, b"acme", b"", f"body {i}".encode(), None, b"", b"")
        futures.append(future)
        deadline = time.monotonic() + 10
        while writer.queued_bytes and time.monotonic() < deadline:  # one pass each
            time.sleep(0.001)
    writer.close()
    assert all(isinstance(f.result, tuple) for f in futures)
    assert len(segments(directory)) == 5  # each pass past the limit opened a new one
    assert [r.body for r in _records(directory)] == [f"body {i}".encode() for i in range(5)]
    with pytest.raises(StoreError, match="closed"):
        writer.submit(Done(), b"acme", b"", b"late", None, b"", b"")


def test_when_the_spool_cannot_be_written_then_every_body_fails_and_none_is_acked(
    guard: Guard, tmp_path: Path
) -> None:
    client = NativeSpoolClient(guard.spool_directory, guard.sealer)
    for path in guard.spool_directory.iterdir():
        path.unlink()
    guard.spool_directory.rmdir()  # no segment can be opened

    async def run() -> list[object]:
        items = [client.record("acme", [b"body %d" % i], "api", b"POST /x") for i in range(3)]
        return await asyncio.gather(*items, return_exceptions=True)

    try:
        outcomes = asyncio.run(run())
        assert all(isinstance(o, StoreError) for o in outcomes), outcomes
        assert all("cannot write the spool" in str(o) for o in outcomes)
        guard.spool_directory.mkdir()  # the next pass opens a segment again
        digest, _ = asyncio.run(client.record("acme", [b"after"], "api", b""))
    finally:
        client.close()
    assert digest == hashlib.sha256(b"after").hexdigest()
    assert [r.body for r in _records(guard.spool_directory)] == [b"after"]


def test_a_writer_far_behind_refuses_the_body(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = NativeSpoolClient(guard.spool_directory, guard.sealer)
    monkeypatch.setattr(spool_native, "MAX_QUEUED", -1)
    try:
        with pytest.raises(StoreError, match="behind"):
            asyncio.run(client.record("acme", [b"body"], "api", b""))
    finally:
        client.close()
    assert _records(guard.spool_directory) == []


def test_a_cancelled_request_does_not_stop_the_others_being_completed(guard: Guard) -> None:
    client = NativeSpoolClient(guard.spool_directory, guard.sealer)

    async def run() -> tuple[str, str]:
        gone = asyncio.ensure_future(client.record("acme", [b"gone"], "api", b""))
        await asyncio.sleep(0)  # submitted
        gone.cancel()
        return await client.record("acme", [b"kept"], "api", b"")

    try:
        digest, _ = asyncio.run(run())
    finally:
        client.close()
    assert digest == hashlib.sha256(b"kept").hexdigest()
    # the cancelled body was written all the same: the indexer will index it
    assert [r.body for r in _records(guard.spool_directory)] == [b"gone", b"kept"]


def test_a_client_serves_one_event_loop_after_another(guard: Guard) -> None:
    client = NativeSpoolClient(guard.spool_directory, guard.sealer)
    try:
        first = asyncio.run(client.record("acme", [b"one"], "api", b""))
        second = asyncio.run(client.record("acme", [b"two"], "api", b""))
    finally:
        client.close()
    assert (first[0], second[0]) == (
        hashlib.sha256(b"one").hexdigest(),
        hashlib.sha256(b"two").hexdigest(),
    )


def test_a_future_that_cannot_be_completed_does_not_strand_the_others(guard: Guard) -> None:
    # a request of a closed event loop sits in the same pass as live ones: the live ones
    # are still answered, and the error is raised once they are
    directory = guard.spool_directory
    directory.mkdir(parents=True, exist_ok=True)
    writer = native_writer.Writer(str(directory), 1 << 20, True, StoreError)
    futures = [Done(), ClosedLoopFuture(), Done(), Done()]
    for i, future in enumerate(futures):
        writer.submit(future, b"acme", b"", b"body %d" % i, None, b"", b"")
    deadline = time.monotonic() + 10
    while writer.queued_bytes and time.monotonic() < deadline:
        time.sleep(0.001)
    with pytest.raises(RuntimeError, match="closed"):
        writer.complete()
    writer.close()
    live = [f for f in futures if not isinstance(f, ClosedLoopFuture)]
    assert [f.result[0] for f in live] == [  # type: ignore[index]
        hashlib.sha256(b"body %d" % i).hexdigest() for i in (0, 2, 3)
    ]


def _all_done(writer: native_writer.Writer) -> None:
    deadline = time.monotonic() + 10
    while writer.queued_bytes and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not writer.queued_bytes


def _signalled(writer: native_writer.Writer) -> bool:
    readable, _, _ = select.select([writer.fileno()], [], [], 0)
    return bool(readable)


def test_with_a_budget_the_writer_completes_part_of_a_pass_oldest_first(guard: Guard) -> None:
    directory = guard.spool_directory
    directory.mkdir(parents=True, exist_ok=True)
    writer = native_writer.Writer(str(directory), 1 << 20, True, StoreError)
    futures = [Done() for _ in range(4)]
    try:
        for i, future in enumerate(futures):
            writer.submit(future, b"acme", b"", b"body %d" % i, None, b"", b"")
        _all_done(writer)
        assert writer.pending
        assert writer.complete(1, False) == 1  # a nanosecond: one body, then its time is up
        assert _signalled(writer)  # (not woken by it: the eventfd is left as it was)
        assert writer.complete(1) == 1
        assert not _signalled(writer)
        assert writer.pending
        assert writer.complete() == 2  # no budget: every one left
        assert not writer.pending
    finally:
        writer.close()
    assert [f.result[0] for f in futures] == [
        hashlib.sha256(b"body %d" % i).hexdigest() for i in range(4)
    ]


def test_a_pass_is_completed_over_several_turns_of_the_event_loop(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each completion may run a request's app: a pass of many bodies must not hold the
    # loop (and the requests arriving meanwhile) until all of them have run
    monkeypatch.setattr(spool_native, "COMPLETION_SLICE_NS", 1)
    client = NativeSpoolClient(guard.spool_directory, guard.sealer)
    turns: list[int] = []

    async def run() -> list[tuple[str, str]]:
        loop = asyncio.get_running_loop()
        ticks = 0

        def tick() -> None:
            nonlocal ticks
            ticks += 1
            loop.call_soon(tick)

        futures = [client.submit("acme", [b"body %d" % i], "api", b"") for i in range(5)]
        for future in futures:
            future.add_done_callback(lambda _: turns.append(ticks))
        _all_done(client.writer_for(loop))  # the loop blocked: one eventfd wake for all
        tick()
        return await asyncio.wait_for(asyncio.gather(*futures), 10)

    try:
        results = asyncio.run(run())
    finally:
        client.close()
    assert [digest for digest, _ in results] == [
        hashlib.sha256(b"body %d" % i).hexdigest() for i in range(5)
    ]
    assert turns == sorted(turns)  # in order
    assert len(set(turns)) == 5  # one a turn
