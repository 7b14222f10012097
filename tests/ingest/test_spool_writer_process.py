"""The spool writer as a process of its own: real child processes, a real spool, SQLite.

``IngestSpool(writer="process")`` pipes each body to ``kairo_guard.ingest.spool_main``,
which digests, seals and group-commits it and acks once it is durable. These tests
start that child for real, kill it, and read back what it wrote.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from kg_testing import make_guard
from procs import child_pids

from kairo_guard import Guard, KeyRing
from kairo_guard.core.exceptions import StoreError
from kairo_guard.core.types import DataClass
from kairo_guard.ingest.spooling import IngestSpool
from kairo_guard.store.spool import backlog

WRITER_MODULE = "kairo_guard.ingest.spool_main"


def _body(i: int) -> bytes:
    return (
        f'{{"id": {i}, "text": "Acme memo {i}: the {i}th shipment leaves Porto on time."}}'.encode()
    )


@pytest.fixture
def explicit(tmp_path: Path) -> Iterator[Guard]:
    """A guard with an explicit key ring and no key file: the child must get the ring."""
    with make_guard(tmp_path / "state", ring=KeyRing.generate(), pii_gate=False) as g:
        yield g


def _writers(home: Path) -> list[int]:
    """Pids of this process's spool writer children for ``home``."""
    return child_pids(os.getpid(), WRITER_MODULE.encode(), str(home).encode())


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


async def _close(spool: IngestSpool, home: Path) -> None:
    """Close the spool and wait until its writer process has exited."""
    pids = _writers(home)
    spool.close()
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the loop notices the exit


def test_when_a_hundred_bodies_arrive_at_once_then_each_is_acked_with_its_digest_and_a_seal(
    explicit: Guard,
) -> None:
    assert not (explicit.settings.home / "keys.json").exists()  # the ring came from the test
    spool = IngestSpool(explicit, writer="process", indexer="none")
    bodies = [_body(i) for i in range(100)]

    async def run() -> list[tuple[str, str]]:
        try:
            return await asyncio.gather(
                *(
                    spool.record("acme", [b[:10], b[10:]], "http", b"POST /documents")
                    for b in bodies
                )
            )
        finally:
            await _close(spool, explicit.settings.home)

    acks = asyncio.run(run())
    for body, (digest, seal) in zip(bodies, acks, strict=True):
        assert digest == hashlib.sha256(body).hexdigest()
        label = explicit.open_seal(seal)  # verifies under the test's ring
        assert (label.tenant, label.data_class, label.digest) == (
            "acme",
            DataClass.CUSTOMER_CONTENT,
            digest,
        )
        assert label.source == "http"
    # every acked body is on disk: the index then holds a provenance row for each
    assert backlog(explicit.spool_directory).pending_bytes > 0
    explicit.wait_indexed()
    digests = {row.digest for row in explicit.store.list_provenance("acme")}
    assert digests == {d for d, _ in acks}


def test_when_the_writer_is_killed_then_pending_bodies_fail_a_new_writer_takes_the_next(
    explicit: Guard,
) -> None:
    home = explicit.settings.home
    spool = IngestSpool(explicit, writer="process", indexer="none")
    before = [_body(i) for i in range(20)]
    stuck = [_body(100 + i) for i in range(5)]

    async def run() -> tuple[
        list[tuple[str, str]], list[tuple[str, str] | BaseException], tuple[str, str], list[int]
    ]:
        try:
            acked = await asyncio.gather(*(spool.record("acme", [b], "http") for b in before))
            (pid,) = _writers(home)
            os.kill(pid, signal.SIGSTOP)  # it reads nothing more: these stay pending
            pending = [asyncio.ensure_future(spool.record("acme", [b], "http")) for b in stuck]
            await asyncio.sleep(0.2)
            assert not any(p.done() for p in pending)
            os.kill(pid, signal.SIGKILL)
            failed = await asyncio.wait_for(
                asyncio.gather(*pending, return_exceptions=True), timeout=10
            )
            deadline = time.monotonic() + 5
            while not _gone(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            later = await asyncio.wait_for(spool.record("acme", [_body(999)], "http"), 10)
            return acked, failed, later, [pid, *_writers(home)]
        finally:
            await _close(spool, home)

    acked, failed, later, pids = asyncio.run(run())
    assert all(isinstance(f, StoreError) for f in failed), failed
    assert later[0] == hashlib.sha256(_body(999)).hexdigest()
    assert explicit.open_seal(later[1]).tenant == "acme"
    killed, *alive = pids
    assert alive
    assert killed not in alive
    # what was acked before the kill is durable and gets indexed; what failed is not there
    explicit.wait_indexed()
    digests = {row.digest for row in explicit.store.list_provenance("acme")}
    assert {d for d, _ in acked} | {later[0]} <= digests
    assert not digests & {hashlib.sha256(b).hexdigest() for b in stuck}


def test_when_the_spool_closes_then_the_writer_exits_and_nothing_is_left_unclosed(
    explicit: Guard,
) -> None:
    # the writer's subprocess transport is closed once it exits: the event loop's end
    # leaves nothing unclosed behind (a ResourceWarning, an error under filterwarnings)
    home = explicit.settings.home
    spool = IngestSpool(explicit, writer="process", indexer="none")

    async def run() -> int:
        await spool.record("acme", [_body(1)], "http")
        (pid,) = _writers(home)
        await _close(spool, home)
        return pid

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pid = asyncio.run(run())
        gc.collect()
    assert _gone(pid)
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
