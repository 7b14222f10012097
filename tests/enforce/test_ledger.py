"""The bookkeeping of one sink check: counts, capped violations, batched audit rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from kairo_guard import Decision, Mode, Outcome, make_sink
from kairo_guard.enforce.ledger import AUDIT_ROWS_PER_ENTRY, CheckLedger

HEADER = {"check": "chk_1", "sink": "router", "kind": "shared-training", "mode": "filter"}
ALLOW = Decision(Outcome.ALLOW, "operator.vetted", "vetted")
BLOCK = Decision(Outcome.BLOCK, "customer.shared", "customer content at a shared sink")


class Entries:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def append(self, entry: Mapping[str, Any]) -> None:
        self.entries.append(dict(entry))


@pytest.mark.parametrize(("max_violations", "kept", "omitted"), [(0, 0, 3), (2, 2, 1), (5, 3, 0)])
def test_when_violations_pass_the_cap_then_later_ones_are_only_counted(
    max_violations: int, kept: int, omitted: int
) -> None:
    audit = Entries()
    ledger = CheckLedger(audit, max_violations, HEADER)
    for i, decision in enumerate([ALLOW, BLOCK, BLOCK, ALLOW, BLOCK]):
        ledger.account(i, decision, f"d{i}", "tp_x")
    sink = make_sink("router", "shared-training")
    report = ledger.close(sink=sink, mode=Mode.FILTER, total=5, started_at=0.0, duration_s=0.1)
    assert (report.total, report.allowed, report.blocked) == (5, 2, 3)
    assert [v.index for v in report.violations] == [1, 2, 4][:kept]
    assert report.violations_omitted == omitted
    assert report.by_rule == {"operator.vetted": 2, "customer.shared": 3}
    summary = audit.entries[-1]
    assert summary == {**HEADER, "event": "check", "total": 5, "allowed": 2, "blocked": 3,
                       "by_rule": {"customer.shared": 3, "operator.vetted": 2}}  # fmt: skip


def test_rows_are_audited_in_batches_and_the_rest_at_close() -> None:
    audit = Entries()
    ledger = CheckLedger(audit, 10, HEADER)
    for i in range(AUDIT_ROWS_PER_ENTRY + 3):
        ledger.account(i, BLOCK if i % 2 else ALLOW, None, None)
    assert [len(e["rows"]) for e in audit.entries] == [AUDIT_ROWS_PER_ENTRY]
    sink = make_sink("router", "shared-training")
    ledger.close(sink=sink, mode=Mode.FILTER, total=AUDIT_ROWS_PER_ENTRY + 3, started_at=0.0,
                 duration_s=0.0)  # fmt: skip
    assert [e["event"] for e in audit.entries] == ["decisions", "decisions", "check"]
    assert len(audit.entries[1]["rows"]) == 3
    assert audit.entries[0]["rows"][1] == (1, Outcome.BLOCK, "customer.shared", None, None)
    # rows name rules, digests and pseudonyms: never a reason, which may describe content
    assert all(BLOCK.reason not in str(e) for e in audit.entries)


def test_a_batch_of_allowed_rows_counts_and_audits_as_one_by_one_does() -> None:
    one, batch = Entries(), Entries()
    single, many = CheckLedger(one, 10, HEADER), CheckLedger(batch, 10, HEADER)
    allow = Decision(Outcome.ALLOW, "allow.operator-public", "vetted")
    rows = [
        (i, Outcome.ALLOW, allow.rule, f"{i:064x}", None) for i in range(AUDIT_ROWS_PER_ENTRY + 3)
    ]
    for index, _, _, digest, tenant in rows:
        single.account(index, allow, digest, tenant)
    many.account_allowed(rows[:5])
    many.account_allowed(rows[5:])
    assert (many.allowed, many.by_rule) == (single.allowed, single.by_rule)
    single.flush_rows()
    many.flush_rows()
    assert [r for e in batch.entries for r in e["rows"]] == [
        r for e in one.entries for r in e["rows"]
    ]
