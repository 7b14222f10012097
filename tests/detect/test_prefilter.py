"""The in-memory prefilter and the batched overlap test of the fingerprint index."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from corpus import excerpt, prose
from kg_testing import make_guard

from kairo_guard import Guard
from kairo_guard.detect.fingerprint import Overlap
from kairo_guard.detect.prefilter import MIN_DELTA, Prefilter, member
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore

FILLER = prose("prefilter-filler", paragraphs=2)


def _old_overlap(guard: Guard, content: object) -> Overlap | None:
    """The per-record test as it was before batches: one store query, no prefilter."""
    index = guard.fingerprints
    fps = index.fingerprinter.of_record(content)
    if not fps:
        return None
    counts: dict[str, int] = {}
    for tenants in guard.store.match_fingerprints(fps).values():
        if len(tenants) >= index.boilerplate_tenants:
            continue
        for tenant in tenants:
            counts[tenant] = counts.get(tenant, 0) + 1
    if not counts:
        return None
    tenant, shared = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    found = Overlap(tenant, shared, len(fps))
    return found if shared >= index.min_shared or found.ratio >= index.min_fraction else None


def test_member_agrees_with_a_set_on_random_values() -> None:
    rng = np.random.default_rng(7)
    held = np.unique(rng.integers(-(2**63), 2**63 - 1, 5000, dtype=np.int64))
    probe = np.concatenate([held[::3], rng.integers(-(2**63), 2**63 - 1, 5000, dtype=np.int64)])
    expected = [int(v) in set(held.tolist()) for v in probe]
    assert member(held, probe).tolist() == expected
    assert not member(held[:0], probe).any()


def test_when_rows_are_added_after_the_load_then_a_refresh_sees_them(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / DB_FILE_NAME)
    store.add_fingerprints("acme", [5, -3, 9])
    pre = Prefilter(store)
    assert pre.refresh() == 3
    store.add_fingerprints("globex", [42, 9])
    probe = np.array([42, 9, 5, 7], dtype=np.int64)
    assert pre.contains(probe).tolist() == [False, True, True, False]
    assert pre.refresh() == 2
    assert pre.contains(probe).tolist() == [True, True, True, False]
    assert pre.refresh() == 0


def test_when_the_delta_grows_past_its_bound_then_it_is_merged_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / DB_FILE_NAME)
    store.add_fingerprints("acme", [1])
    pre = Prefilter(store)
    pre.refresh()
    added = list(range(10, 10 + MIN_DELTA + 5))
    store.add_fingerprints("acme", added)
    pre.refresh()
    assert len(pre) == len(added) + 1
    assert pre.contains(np.array([1, *added[:: MIN_DELTA // 7]], dtype=np.int64)).all()


def test_batched_overlaps_decide_as_the_per_record_test_did(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    docs = {t: prose(f"{t}-doc", paragraphs=3) for t in ("acme", "globex", "initech")}
    for tenant, doc in docs.items():
        guard.fingerprints.add(tenant, doc)
    shared = prose("shared-boilerplate", paragraphs=1)
    for tenant in ("t1", "t2", "t3", "t4", "t5"):  # boilerplate: indexed for 5 tenants
        guard.fingerprints.add(tenant, shared)
    rng = random.Random(3)
    records: list[object] = [{"text": FILLER}, "", {"n": 1}, shared, {"text": shared + FILLER}]
    for doc in docs.values():
        for length in (60, 120, 180, 260, 400, len(doc)):
            start = rng.randrange(0, max(1, len(doc) - length))
            records.append({"text": FILLER[:300] + excerpt(doc, start, length) + FILLER[300:]})
            records.append(excerpt(doc, start, length))
    records.append({"a": excerpt(docs["acme"], 0, 150), "b": excerpt(docs["globex"], 0, 150)})
    expected = [_old_overlap(guard, r) for r in records]
    assert guard.fingerprints.overlaps(records) == expected
    assert [guard.fingerprints.overlap(r) for r in records] == expected
    assert sum(e is not None for e in expected) >= 10  # the set mixes hits and misses


def test_when_a_tenant_is_erased_then_its_text_no_longer_blocks_though_the_prefilter_holds_it(
    tmp_path: Path,
) -> None:
    guard = make_guard(tmp_path)
    doc = prose("erased-doc", paragraphs=3)
    guard.fingerprints.add("acme", doc)
    assert guard.fingerprints.overlap(doc) is not None  # the prefilter is loaded now
    held = len(guard.fingerprints.prefilter)
    guard.store.erase_tenant("acme")
    assert guard.fingerprints.overlaps([doc, {"text": doc}]) == [None, None]
    assert len(guard.fingerprints.prefilter) == held  # still in memory: only over-includes


def test_a_check_whose_records_are_all_blocked_by_their_seals_never_loads_the_index(
    guard: Guard,
) -> None:
    # customer content at a shared sink blocks on its seal alone: loading every indexed
    # fingerprint first (as checks did at their start) cost a scan a sixth of its time
    doc = prose("sealed-doc", paragraphs=2)
    records = [guard.label_record({"text": doc, "n": i}, tenant="acme") for i in range(3)]
    shared = guard.resolve_sink("s", kind="shared-training")
    report = guard.check(records, sink=shared)
    assert report.blocked == 3
    assert not guard.fingerprints.prefilter.loaded
    # the first record that needs the net loads it, and what was indexed is seen
    report = guard.check([{"text": excerpt(doc, 100, 400)}], sink=shared)
    assert guard.fingerprints.prefilter.loaded
    assert [v.rule for v in report.violations] == ["fingerprint.tenant-content"]
