"""Records decided in batches (one fingerprint lookup for many) are decided as they are
one at a time; the CLI scan at a shared sink decides its lines in batches."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
from corpus import excerpt, prose
from kg_testing import sealed_record

from kairo_guard import Guard
from kairo_guard.cli.records import SCAN_BATCH, scan_stream
from kairo_guard.core.types import Mode, Sealed
from kairo_guard.detect.accumulation import ACCUMULATED_RULE

DOCS = {t: prose(f"batch-{t}", paragraphs=3) for t in ("acme", "globex")}
PUBLIC = [prose(f"batch-public-{i}", paragraphs=1) for i in range(4)]


def _mixed(guard: Guard) -> list[Any]:
    for tenant, doc in DOCS.items():
        guard.index_content(tenant, {"body": doc})

    def op(record: dict[str, Any]) -> dict[str, Any]:
        return sealed_record(guard, record, data_class="operator_public")

    acme, globex = DOCS["acme"], DOCS["globex"]
    return [
        op({"text": PUBLIC[0]}),
        {"text": excerpt(acme, 40, 400)},  # unlabeled tenant text: whose it is
        {"text": PUBLIC[1]},  # unlabeled public text
        op({"text": PUBLIC[2] + excerpt(globex, 100, 300)}),  # laundered
        guard.label_record({"text": PUBLIC[3]}, tenant="acme", source="test"),
        op({"text": PUBLIC[3]}) | {"extra": "digest no longer matches"},
        Sealed({"text": "two seals", "_kairo": "x"}, "y"),  # ambiguous
        op({"text": acme}),
        b"\xff\xfe not UTF-8 text",
        op({"text": PUBLIC[1], "n": 3}),
        {"_kairo": "kg1.not-a-seal", "text": PUBLIC[0]},
    ]


def _summary(report: Any) -> tuple[Any, ...]:
    return (
        report.total,
        report.allowed,
        dict(report.by_rule),
        [(v.index, v.rule, v.reason, v.digest, v.tenant) for v in report.violations],
    )


def test_batched_decisions_equal_one_at_a_time_on_a_mixed_set(guard: Guard) -> None:
    records = _mixed(guard)
    one = guard.checks.start("shared-training", mode=Mode.FILTER)
    singles = [one.decide(r) for r in records]
    many = guard.checks.start("shared-training", mode=Mode.FILTER)
    batched = many.decide_many(records)
    assert batched == singles
    assert _summary(many.finish()) == _summary(one.finish())
    rules = {d.rule for d in singles}
    assert {"fingerprint.tenant-content", "allow.operator-public", "seal.ambiguous"} <= rules


def test_when_a_list_is_checked_then_its_pieces_of_one_document_block_together(
    guard: Guard,
) -> None:
    doc = DOCS["acme"]
    guard.index_content("acme", {"body": doc})
    index = guard.fingerprints
    for start in range(0, 1000, 10):
        pieces = [
            {"text": f"{PUBLIC[i][:200]} {doc[start + 100 * i : start + 100 * i + 100]}"}
            for i in range(3)
        ]
        found = index.evidence([index.fingerprints_of(p) for p in pieces])
        if all(0 < len(e.shared.get("acme", ())) < index.min_shared for e in found):
            break
    sealed = [sealed_record(guard, p, data_class="operator_public") for p in pieces]
    assert all(guard.check([s], sink="shared-training").ok for s in sealed)
    report = guard.check(sealed, sink="shared-training", mode="filter")
    assert report.by_rule == {ACCUMULATED_RULE: 3}


def test_when_a_file_is_scanned_at_a_shared_sink_then_batches_decide_as_a_check_does(
    guard: Guard, tmp_path: Path
) -> None:
    records = [r for r in _mixed(guard) if isinstance(r, dict)]
    records = (records * (SCAN_BATCH // len(records) + 2))[: SCAN_BATCH + 7]
    lines = [orjson.dumps(r) for r in records]
    lines[5] = b'{"broken'
    lines[9] = b"   "
    out = io.BytesIO()
    run = guard.checks.start("shared-training", mode=Mode.FILTER)
    assert run.batches
    scanned = scan_stream(run, io.BytesIO(b"\n".join(lines) + b"\n"), out, 1 << 20)
    expected = guard.checks.start("shared-training", mode=Mode.FILTER)
    passing = []
    for number, (line, record) in enumerate(zip(lines, records, strict=True)):
        if number == 5:
            expected.block_unreadable("input.malformed-json", "malformed JSON", None, number)
        elif number != 9:
            decision = expected.decide_parts(*_parts(record), position=number)
            if decision.outcome.value == "allow":
                passing.append(line)
    report = expected.finish()
    assert (scanned.total, scanned.allowed, dict(scanned.by_rule)) == (
        report.total,
        report.allowed,
        dict(report.by_rule),
    )
    assert [orjson.loads(x) for x in out.getvalue().splitlines()] == [
        orjson.loads(x) for x in passing
    ]


def _parts(record: dict[str, Any]) -> tuple[Any, Any]:
    body = {k: v for k, v in record.items() if k != "_kairo"}
    return body, record.get("_kairo")


def test_when_a_tenant_is_erased_then_its_text_no_longer_blocks_a_check_loaded_before(
    guard: Guard,
) -> None:
    doc = prose("batch-erased", paragraphs=3)
    guard.index_content("acme", {"body": doc})
    sealed = sealed_record(guard, {"text": doc}, data_class="operator_public")
    assert guard.check([sealed], sink="shared-training").by_rule == {
        "fingerprint.tenant-content": 1
    }
    held = len(guard.fingerprints.prefilter)
    guard.erase_tenant("acme")
    report = guard.check([sealed, {"text": doc}], sink="shared-training", mode="filter")
    assert report.by_rule == {"allow.operator-public": 1, "seal.missing": 1}
    assert len(guard.fingerprints.prefilter) == held  # still held: the store said no
