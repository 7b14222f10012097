"""Evidence accumulated over the records of one check: pieces of a tenant's text that
each pass alone block together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from corpus import prose
from kg_testing import sealed_record

from kairo_guard import Guard
from kairo_guard.core.types import Mode
from kairo_guard.detect.accumulation import ACCUMULATED_RULE, CheckNet
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE
from kairo_guard.enforce.service import CHECK_BATCH

ALLOWED = "allow.operator-public"
FILLER = prose("accumulation-filler", paragraphs=6)


def _hidden(piece: str, at: int) -> dict[str, Any]:
    """A record: ``piece`` inside public text."""
    return {"text": f"{FILLER[at : at + 250]} {piece} {FILLER[at + 250 : at + 500]}"}


def _pieces(
    guard: Guard, tenant: str, doc: str, count: int, first_at: int = 0
) -> list[dict[str, Any]]:
    """Records each holding a 100-character piece of ``doc`` (from one 100 * count
    character span, cut in order; piece ``i`` hidden at ``first_at + 500 * i`` of the
    filler) that alone shares 1 or 2 fingerprints with ``tenant``: below the per-record
    threshold, but evidence."""
    index = guard.fingerprints
    for start in range(0, len(doc) - 100 * count, 10):
        records = [
            _hidden(doc[start + 100 * i : start + 100 * (i + 1)], first_at + 500 * i)
            for i in range(count)
        ]
        found = index.evidence([index.fingerprints_of(r) for r in records])
        if all(1 <= len(e.shared.get(tenant, ())) < index.min_shared for e in found):
            assert index.overlaps(records) == [None] * count  # each passes alone
            return records
    raise AssertionError("no span of the document cuts into sub-threshold pieces")


def _check(guard: Guard, records: list[dict[str, Any]], mode: Mode = Mode.FILTER) -> Any:
    sealed = [sealed_record(guard, r, data_class="operator_public") for r in records]
    return guard.check(sealed, sink="shared-training", mode=mode)


def test_when_three_pieces_of_one_document_come_in_one_batch_then_all_three_block(
    guard: Guard,
) -> None:
    doc = prose("acme-accumulated", paragraphs=4)
    guard.fingerprints.add("acme", doc)
    pieces = _pieces(guard, "acme", doc, 3)
    public = [{"text": FILLER[i : i + 300]} for i in range(0, 1500, 300)]
    report = _check(guard, [public[0], *pieces, *public[1:]])
    assert report.by_rule == {ALLOWED: 5, ACCUMULATED_RULE: 3}
    assert {v.index for v in report.violations} == {1, 2, 3}
    assert {v.tenant for v in report.violations} == {guard.keys.pseudonym("acme")}


def test_when_the_pieces_come_from_three_tenants_then_none_blocks(guard: Guard) -> None:
    records = []
    for i, tenant in enumerate(("acme", "globex", "initech")):
        doc = prose(f"{tenant}-spread", paragraphs=4)
        guard.fingerprints.add(tenant, doc)
        records += _pieces(guard, tenant, doc, 1, first_at=500 * i)
    report = _check(guard, records)
    assert report.by_rule == {ALLOWED: 3}


@pytest.mark.parametrize("copy_first", [False, True], ids=["piece-first", "copy-first"])
def test_when_a_check_holds_a_copy_of_the_document_then_its_pieces_block_with_it(
    guard: Guard, copy_first: bool
) -> None:
    doc = prose("acme-copied", paragraphs=6)
    guard.fingerprints.add("acme", doc)
    (piece,) = _pieces(guard, "acme", doc[:1200], 1)
    copy = {"text": f"Reprinted: {doc[-500:]}"}
    assert guard.fingerprints.overlaps([copy])[0] is not None  # caught by itself
    public = {"text": FILLER[2000:2300]}
    records = [copy, public, piece] if copy_first else [piece, public, copy]
    report = _check(guard, records)
    assert report.by_rule == {FINGERPRINT_RULE: 1, ALLOWED: 1, ACCUMULATED_RULE: 1}
    blocked = {v.index: v.rule for v in report.violations}
    assert blocked[records.index(piece)] == ACCUMULATED_RULE


def test_when_pieces_come_one_at_a_time_then_blocks_start_where_the_threshold_is_crossed(
    guard: Guard,
) -> None:
    doc = prose("acme-streamed", paragraphs=4)
    guard.fingerprints.add("acme", doc)
    pieces = _pieces(guard, "acme", doc, 4)
    sealed = [sealed_record(guard, r, data_class="operator_public") for r in pieces]
    run = guard.checks.start("shared-training", mode=Mode.FILTER)
    rules = [run.decide(r).rule for r in sealed]  # a stream: a batch of one each time
    run.finish()
    crossed = rules.index(ACCUMULATED_RULE)
    assert crossed >= 1  # the first alone never crosses (it is sub-threshold)
    assert rules[:crossed] == [ALLOWED] * crossed  # let through: not recalled
    assert rules[crossed:] == [ACCUMULATED_RULE] * (len(rules) - crossed)


def test_when_the_threshold_is_crossed_in_enforce_mode_then_the_check_fails(
    guard: Guard,
) -> None:
    doc = prose("acme-enforced", paragraphs=4)
    guard.fingerprints.add("acme", doc)
    pieces = _pieces(guard, "acme", doc, 3)
    report = _check(guard, pieces, mode=Mode.ENFORCE)
    assert not report.ok
    assert report.by_rule == {ACCUMULATED_RULE: 3}


def test_when_unlabeled_records_carry_the_pieces_then_they_add_no_evidence(
    guard: Guard,
) -> None:
    doc = prose("acme-unlabeled", paragraphs=4)
    guard.fingerprints.add("acme", doc)
    pieces = _pieces(guard, "acme", doc, 3)
    net = CheckNet(guard.fingerprints)
    # blocked anyway (no seal): they reach no sink, so they are no evidence
    assert net.decide(pieces[:2], [False, False]) == [None, None]
    assert net.decide(pieces[2:], [True]) == [None]


def test_a_threshold_below_one_is_refused(guard: Guard) -> None:
    with pytest.raises(ValueError, match="threshold"):
        CheckNet(guard.fingerprints, threshold=0)


# -- a check that holds every record: later evidence blocks earlier records ----------------


def _far_apart(guard: Guard, pieces: list[dict[str, Any]]) -> tuple[list[Any], list[int]]:
    """The pieces, sealed, each after CHECK_BATCH public records (so each is in another
    lookup batch of the check), and their positions."""
    records: list[Any] = []
    positions = []
    for k, piece in enumerate(pieces):
        records += [
            sealed_record(
                guard,
                {"text": f"{FILLER[j % 900 : j % 900 + 300]} #{k}-{j}"},
                data_class="operator_public",
            )
            for j in range(CHECK_BATCH + 10)
        ]
        positions.append(len(records))
        records.append(sealed_record(guard, piece, data_class="operator_public"))
    return records, positions


@pytest.fixture
def far_apart(guard: Guard) -> tuple[list[Any], list[int]]:
    doc = prose("acme-far-apart", paragraphs=4)
    guard.fingerprints.add("acme", doc)
    return _far_apart(guard, _pieces(guard, "acme", doc, 3))


def test_when_pieces_are_lookup_batches_apart_in_a_list_then_all_of_them_block(
    guard: Guard, far_apart: tuple[list[Any], list[int]]
) -> None:
    records, positions = far_apart
    report = guard.check(records, sink="shared-training", mode=Mode.FILTER)
    assert report.by_rule == {ALLOWED: len(records) - 3, ACCUMULATED_RULE: 3}
    assert sorted(v.index for v in report.violations) == positions
    guard.audit.flush()
    lines = (Path(guard.settings.home) / "audit" / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    summary = [e for e in entries if e.get("event") == "check"][-1]
    assert (summary["allowed"], summary["blocked"]) == (len(records) - 3, 3)
    revised = [row for e in entries if e.get("event") == "decisions" for row in e["rows"]]
    assert sorted(row[0] for row in revised if row[2] == ACCUMULATED_RULE) == positions


def test_a_filtering_sink_given_a_list_passes_none_of_the_pieces(
    guard: Guard, far_apart: tuple[list[Any], list[int]]
) -> None:
    records, positions = far_apart
    seen: list[Any] = []

    @guard.sink("far-apart-train", kind="shared-training", mode="filter")
    def train(batch: list[Any]) -> None:
        seen.extend(batch)

    train(records)
    assert len(seen) == len(records) - 3
    assert not any(records[p] is r for p in positions for r in seen)


def test_a_stream_cannot_recall_the_pieces_it_let_through(
    guard: Guard, far_apart: tuple[list[Any], list[int]]
) -> None:
    records, positions = far_apart
    passed = list(guard.checked(iter(records), sink="shared-training", mode=Mode.FILTER))
    # the first piece was consumed before the threshold was crossed: it cannot be recalled
    assert any(r is records[positions[0]] for r in passed)
    assert not any(r is records[positions[-1]] for r in passed)


@pytest.mark.parametrize("keeps", [False, True])
def test_a_check_holds_let_through_records_only_when_its_caller_will_recall_them(
    guard: Guard, far_apart: tuple[list[Any], list[int]], keeps: bool
) -> None:
    # a stream (CLI scan, guard.checked, a dataset stream) never recalls: what it held
    # would only grow with its length, so it holds nothing unless its caller asks
    records, positions = far_apart
    run = guard.checks.start("shared-training", mode=Mode.FILTER)
    if keeps:
        run.keep_for_recall()
    for at in range(0, len(records), CHECK_BATCH):
        run.decide_many(records[at : at + CHECK_BATCH])
    recalled = run.recall()
    report = run.finish()
    assert recalled == ([positions[0]] if keeps else [])
    assert (positions[0] in {v.index for v in report.violations}) is keeps
