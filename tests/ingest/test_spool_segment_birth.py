"""A new segment is never seen by the indexer before its writer holds its lock.

The indexer takes a segment whose lock it can take for finished and removes it once it
has indexed it. A writer that created a segment under its name and locked it a moment
later let an indexer pass in that moment remove the new, empty segment: the body then
went to a removed file, was acknowledged, and was never indexed (CI caught it once, as
a thread indexer that never indexed its one body). Writers now make ``<name>.new``, lock
it and only then link it to its name.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import orjson
import pytest
from corpus import prose

from kairo_guard import Guard, KeyRing
from kairo_guard.ingest.spooling import IngestSpool
from kairo_guard.store import spool_append
from kairo_guard.store.spool import (
    NEW_SUFFIX,
    SEGMENT_SUFFIX,
    UNMADE_GRACE,
    backlog,
    segments,
    sweep_unmade,
)


def _indexed(guard: Guard) -> set[str]:
    return {row.digest for row in guard.store.list_provenance("acme")}


def _body(n: int) -> bytes:
    return orjson.dumps({"text": prose(f"segment-birth-{n}", paragraphs=1)})


def test_when_an_index_pass_runs_while_a_segment_is_made_then_its_body_is_indexed(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an indexer pass exactly in the instant before the writer locks its new segment
    seen: list[list[str]] = []

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_SH and not seen:
            seen.append([p.name for p in segments(guard.spool_directory)])
            guard.indexer.pass_once()
        fcntl.flock(fd, operation)

    fake = types.SimpleNamespace(**{n: getattr(fcntl, n) for n in dir(fcntl) if n.isupper()})
    fake.flock = flock
    monkeypatch.setattr(spool_append, "fcntl", fake)
    spool = IngestSpool(guard, writer="thread", indexer="none")
    try:
        digest, _ = asyncio.run(spool.record("acme", [_body(0)], "http", b"POST /documents"))
    finally:
        spool.close()
    guard.indexer.drain()
    assert _indexed(guard) == {digest}  # before: the pass removed the segment, nothing indexed
    assert seen == [[]]  # the pass found no segment: it was not one yet
    assert not [n for n in os.listdir(guard.spool_directory) if n.endswith(NEW_SUFFIX)]


# Makes flock(LOCK_SH) (the writer's lock on a new segment) wait 50 ms: the instant
# between a segment's making and its lock, stretched so an index pass falls into it.
_SLOW_LOCK = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/file.h>
#include <time.h>
int flock(int fd, int operation) {
    static int (*real)(int, int);
    if (!real) real = (int (*)(int, int))dlsym(RTLD_NEXT, "flock");
    if (operation == LOCK_SH) {
        struct timespec pause = {0, 50000000};
        nanosleep(&pause, 0);
    }
    return real(fd, operation);
}
"""

_WRITE_EACH_TO_ITS_OWN_SEGMENT = """
import asyncio, sys
from pathlib import Path
import orjson
from kairo_guard import Guard, KeyRing
from kairo_guard.ingest import spool_native
spool_native.SEGMENT_BYTES = 1  # a segment for every body
home, spool, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
guard = Guard(home=home, key=KeyRing.from_env_value(sys.argv[4]), pii_gate=False)
client = spool_native.NativeSpoolClient(spool, guard.sealer)
async def main():
    for n in range(count):
        body = orjson.dumps({"text": f"body {n} " + "of a tenant's document " * 20})
        digest, _ = await client.record("acme", [body], "http", b"POST /documents")
        print(digest, flush=True)
asyncio.run(main())
client.close()
"""


# Makes link() fail as on a file system without hard links (EPERM).
_NO_HARD_LINKS = r"""
#include <errno.h>
int link(const char *from, const char *to) {
    (void)from;
    (void)to;
    errno = EPERM;
    return -1;
}
"""


def _shim(tmp_path: Path, source: str) -> Path:
    """A shared object for LD_PRELOAD, built from ``source`` with gcc."""
    c_file, shim = tmp_path / "shim.c", tmp_path / "shim.so"
    c_file.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", shim, c_file, "-ldl"], check=True)
    return shim


def _write_natively(
    guard: Guard, ring: KeyRing, tmp_path: Path, shim: Path, count: int
) -> set[str]:
    """Have the C writer, in a process with ``shim`` preloaded, spool ``count`` bodies to
    the guard's spool, each to a segment of its own; return their digests."""
    writer = subprocess.run(
        [sys.executable, "-c", _WRITE_EACH_TO_ITS_OWN_SEGMENT, str(tmp_path / "writer"),
         str(guard.spool_directory), str(count), ring.to_env_value()],
        env={**os.environ, "LD_PRELOAD": str(shim)}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert writer.returncode == 0, writer.stderr
    digests = set(writer.stdout.split())
    assert len(digests) == count
    return digests


def test_when_an_index_pass_runs_while_the_native_writer_makes_a_segment_then_its_body_is_indexed(
    guard: Guard, ring: KeyRing, tmp_path: Path
) -> None:
    # The C writer, in a process of its own whose flock() waits 50 ms before locking,
    # writes bodies each to a new segment while this process runs index passes back to
    # back on the same spool (before: the passes removed the new segments, and no body
    # was indexed)
    shim = _shim(tmp_path, _SLOW_LOCK)
    stop = threading.Event()
    passes = [0]

    def index() -> None:
        while not stop.is_set():
            guard.indexer.pass_once()
            passes[0] += 1
            time.sleep(0.001)

    indexer = threading.Thread(target=index, daemon=True)
    indexer.start()
    try:
        digests = _write_natively(guard, ring, tmp_path, shim, 5)
    finally:
        stop.set()
        indexer.join(30)
    assert passes[0] > 50  # passes ran while each segment was being made
    guard.indexer.drain()
    assert _indexed(guard) == digests
    assert backlog(guard.spool_directory).pending_bytes == 0


def test_a_dead_writers_unmade_segment_is_removed_once_old_and_unlocked(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    old = spool / f"seg-1-1{SEGMENT_SUFFIX}{NEW_SUFFIX}"
    young = spool / f"seg-2-1{SEGMENT_SUFFIX}{NEW_SUFFIX}"
    locked = spool / f"seg-3-1{SEGMENT_SUFFIX}{NEW_SUFFIX}"
    other = spool / "notes.new"
    for path in (old, young, locked, other):
        path.touch()
    an_hour_ago = time.time() - 3600
    for path in (old, locked, other):
        os.utime(path, (an_hour_ago, an_hour_ago))
    fd = os.open(locked, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a writer still making it
        assert sweep_unmade(spool) == 1
    finally:
        os.close(fd)
    assert sorted(p.name for p in spool.iterdir()) == sorted(p.name for p in (young, locked, other))


def test_the_indexer_sweeps_leftovers_at_its_first_pass_then_once_a_grace_period(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = guard.spool_directory
    spool.mkdir(parents=True, exist_ok=True)
    an_hour_ago = time.time() - 3600

    def leftover(n: int) -> Path:
        path = spool / f"seg-{n}-1{SEGMENT_SUFFIX}{NEW_SUFFIX}"
        path.touch()
        os.utime(path, (an_hour_ago, an_hour_ago))
        return path

    now = [1000.0]
    monkeypatch.setattr("time.monotonic", lambda: now[0])  # the sweep's clock
    first = leftover(1)
    guard.indexer.pass_once()
    assert not first.exists()  # a dead writer's leftover goes at the first pass
    second = leftover(2)
    now[0] += UNMADE_GRACE / 2
    guard.indexer.pass_once()
    assert second.exists()  # not every pass lists the spool for leftovers again
    now[0] += UNMADE_GRACE / 2
    guard.indexer.pass_once()
    assert not second.exists()


def test_on_a_file_system_without_hard_links_the_native_writer_renames_its_segments(
    guard: Guard, ring: KeyRing, tmp_path: Path
) -> None:
    digests = _write_natively(guard, ring, tmp_path, _shim(tmp_path, _NO_HARD_LINKS), 3)
    names = os.listdir(guard.spool_directory)
    assert len([n for n in names if n.endswith(SEGMENT_SUFFIX)]) == 3
    assert not [n for n in names if n.endswith(NEW_SUFFIX)]
    guard.indexer.drain()
    assert _indexed(guard) == digests


@pytest.fixture
def no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.link() fails as on a file system without hard links."""

    def link(src: object, dst: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", link)


@pytest.mark.usefixtures("no_hard_links")
def test_on_a_file_system_without_hard_links_the_python_writer_renames_its_segments(
    guard: Guard,
) -> None:
    spool = IngestSpool(guard, writer="thread", indexer="none")
    try:
        digest, _ = asyncio.run(spool.record("acme", [_body(1)], "http", b"POST /documents"))
    finally:
        spool.close()
    assert not [n for n in os.listdir(guard.spool_directory) if n.endswith(NEW_SUFFIX)]
    guard.indexer.drain()
    assert _indexed(guard) == {digest}


@pytest.mark.usefixtures("no_hard_links")
def test_a_segment_is_never_renamed_over_another(tmp_path: Path) -> None:
    # where link() is missing, rename() would replace a name link() refuses: refused too
    made, taken = (
        tmp_path / f"seg-1-1{SEGMENT_SUFFIX}{NEW_SUFFIX}",
        tmp_path / f"seg-1-1{SEGMENT_SUFFIX}",
    )
    made.write_bytes(b"")
    taken.write_bytes(b"records")
    with pytest.raises(FileExistsError):
        spool_append._give_name(made, taken)
    assert taken.read_bytes() == b"records"
