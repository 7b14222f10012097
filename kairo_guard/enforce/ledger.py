"""The bookkeeping of one sink check: counts, violations, audit rows, the report.

A :class:`~kairo_guard.enforce.check.SinkCheck` decides records; its
:class:`CheckLedger` accounts for each decision as it is made (counted by rule, kept as
a violation for the report up to a cap, and written as one audit row, rows chained into
the audit log in batches) and closes the check with its summary entry and
:class:`~kairo_guard.core.report.CheckReport`. Rows hold digests and pseudonyms, never
content.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kairo_guard.core.keys import pseudonymize_name
from kairo_guard.core.policy import Decision
from kairo_guard.core.report import CheckReport, Violation
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import AuditAppender, Mode, Outcome

AUDIT_ROWS_PER_ENTRY = 512
"""Decisions per audit entry: each decision is one row, rows are chained in batches."""


def audit_sink_name(sink: Sink, pseudonym: Callable[[str], str | None]) -> str:
    """The sink's name for the audit log: a tenant id in it becomes its pseudonym."""
    if not sink.tenant:
        return sink.name
    return pseudonymize_name(sink.name, sink.tenant, pseudonym(sink.tenant) or "?")


class CheckLedger:
    """Accounts for the decisions of one check and closes it.

    Args:
        audit: where decision rows and the summary go.
        max_violations: violations kept for the report; later ones are only counted.
        header: the check's audit header (check id, sink, kind, sink tenant, mode),
            repeated in each of its audit entries.
    """

    def __init__(
        self, audit: AuditAppender, max_violations: int, header: Mapping[str, object]
    ) -> None:
        self._audit = audit
        self._max_violations = max_violations
        self.header = dict(header)
        self.allowed = 0
        self.by_rule: dict[str, int] = {}
        self.violations: list[Violation] = []
        self.omitted = 0
        self._rows: list[tuple[object, ...]] = []

    def account(
        self, index: int, decision: Decision, digest: str | None, tenant: str | None
    ) -> None:
        """Count and audit one decision; ``tenant`` is the owner's pseudonym."""
        rule = decision.rule
        by_rule = self.by_rule
        by_rule[rule] = by_rule.get(rule, 0) + 1
        outcome = decision.outcome
        if outcome is Outcome.ALLOW:
            self.allowed += 1
        elif len(self.violations) < self._max_violations:
            violation = Violation(index, rule, decision.reason, digest, tenant)
            self.violations.append(violation)
        else:
            self.omitted += 1
        rows = self._rows
        rows.append((index, outcome, rule, digest, tenant))  # orjson writes enums as values
        if len(rows) >= AUDIT_ROWS_PER_ENTRY:
            self.flush_rows()

    def revise(
        self,
        index: int,
        allowed_by: str,
        decision: Decision,
        digest: str | None,
        tenant: str | None,
    ) -> None:
        """Count and audit the block of a record accounted as allowed (under
        ``allowed_by``) earlier in the check, before any record left it: its audit row
        is written again with the block, which is the record's decision."""
        by_rule = self.by_rule
        by_rule[allowed_by] -= 1
        if not by_rule[allowed_by]:
            del by_rule[allowed_by]
        self.allowed -= 1
        self.account(index, decision, digest, tenant)

    def account_allowed(
        self, rows: Sequence[tuple[int, Outcome, str, str | None, str | None]]
    ) -> None:
        """Count and audit decisions that all allow, given as their audit rows
        ``(index, outcome, rule, digest, tenant)`` (a batch of vetted records)."""
        by_rule = self.by_rule
        for row in rows:
            by_rule[row[2]] = by_rule.get(row[2], 0) + 1
        self.allowed += len(rows)
        self._rows.extend(rows)
        if len(self._rows) >= AUDIT_ROWS_PER_ENTRY:
            self.flush_rows()

    def flush_rows(self) -> None:
        """Write the rows not yet audited, as one entry."""
        if self._rows:
            rows, self._rows = self._rows, []
            self._audit.append({"event": "decisions", **self.header, "rows": rows})

    def close(
        self,
        *,
        sink: Sink,
        mode: Mode,
        total: int,
        started_at: float,
        duration_s: float,
    ) -> CheckReport:
        """Flush the rows, audit the check's summary and return its report."""
        self.flush_rows()
        report = CheckReport(
            check_id=str(self.header["check"]),
            sink=sink.name,
            kind=sink.label,
            mode=mode,
            total=total,
            allowed=self.allowed,
            blocked=total - self.allowed,
            by_rule=dict(self.by_rule),
            violations=tuple(self.violations),
            violations_omitted=self.omitted,
            started_at=started_at,
            duration_s=duration_s,
        )
        self._audit.append(
            {
                "event": "check",
                **self.header,
                "total": report.total,
                "allowed": report.allowed,
                "blocked": report.blocked,
                "by_rule": dict(sorted(report.by_rule.items())),
            }
        )
        return report
