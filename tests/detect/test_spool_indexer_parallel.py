"""Fingerprinting a batch in several threads indexes exactly what one thread does body
by body: the same fingerprints under the same tenants, the same audit entries in the
same order, an erased tenant's bodies skipped in place. Real spool, SQLite store and
native core.
"""

from __future__ import annotations

import threading
from pathlib import Path

from corpus import prose
from kg_testing import make_guard

from kairo_guard.core.keys import KeyRing
from kairo_guard.detect.indexer import PARALLEL_BYTES
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.store.spool import encode_body
from kairo_guard.store.spool_append import SegmentAppender

TENANTS = ["acme", "gone", "globex"]


def _index(
    home: Path, ring: KeyRing, workers: int, *, one_by_one: bool = False
) -> tuple[list[tuple[int, str]], list[str]]:
    with make_guard(home, ring=ring, pii_gate=False) as guard:
        for tenant in TENANTS:
            new_api_key(guard.store, tenant)
        guard.erase_tenant("gone")
        bodies = [
            encode_body(TENANTS[i % 3], "", b'{"text": "%s"}' % prose(f"doc {i}", 60).encode())
            for i in range(90)
        ]
        assert sum(len(b) for b in bodies) > 2 * PARALLEL_BYTES
        appender = SegmentAppender(guard.spool_directory)
        assert appender.append(bodies) is None
        appender.close()
        guard.indexer.workers = workers
        if one_by_one:  # a batch per body: no batch to split, nothing to line up
            guard.indexer._batch_bytes = 16  # (less than any record)
        assert guard.indexer.drain() == len(bodies)
        guard.audit.flush()
        events = [
            line.split(b'"event":"', 1)[1].split(b'"', 1)[0].decode()
            for line in guard.audit.path.read_bytes().splitlines()
            if b'"event":"' in line
        ]
        return sorted(guard.store.iter_fingerprints()), events


def test_several_threads_index_exactly_what_one_does(tmp_path: Path, ring: KeyRing) -> None:
    serial = _index(tmp_path / "one", ring, 1, one_by_one=True)
    before = {t.name for t in threading.enumerate()}
    parallel = _index(tmp_path / "two", ring, 2)
    pool = {t.name for t in threading.enumerate()} - before
    assert any(name.startswith("kairo-guard-fp") for name in pool)  # it did run in threads
    assert parallel == serial
    fingerprints, events = serial
    assert {tenant for _, tenant in fingerprints} == {"acme", "globex"}  # none of "gone"
    assert events.count("spool.erased") == 30
    assert len(fingerprints) > 1000
