"""What a check found: counts by rule and every refused record, never content."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kairo_guard.core.types import Mode


@dataclass(frozen=True, slots=True)
class Violation:
    """One refused record: its 0-based position, the deciding rule and why."""

    index: int
    rule: str
    reason: str
    digest: str | None
    tenant: str | None
    """The pseudonym of the tenant the record belongs to, if known."""

    def to_dict(self, *, line_numbers: bool = False) -> dict[str, Any]:
        """Return a JSON-ready dict; ``line_numbers`` reports 1-based ``line`` instead."""
        where = {"line": self.index + 1} if line_numbers else {"index": self.index}
        return {
            **where,
            "rule": self.rule,
            "reason": self.reason,
            "digest": self.digest,
            "tenant": self.tenant,
        }


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The outcome of one check of records at one sink."""

    check_id: str
    sink: str
    kind: str
    mode: Mode
    total: int
    allowed: int
    blocked: int
    by_rule: Mapping[str, int]
    violations: tuple[Violation, ...]
    violations_omitted: int
    started_at: float
    duration_s: float

    @property
    def ok(self) -> bool:
        """True if no record was refused."""
        return self.blocked == 0

    def to_dict(self, *, line_numbers: bool = False) -> dict[str, Any]:
        """Return the report as JSON-ready data (the ``scan --report`` format)."""
        return {
            "check_id": self.check_id,
            "sink": self.sink,
            "kind": self.kind,
            "mode": self.mode.value,
            "total": self.total,
            "allowed": self.allowed,
            "blocked": self.blocked,
            "by_rule": dict(sorted(self.by_rule.items())),
            "violations": [v.to_dict(line_numbers=line_numbers) for v in self.violations],
            "violations_omitted": self.violations_omitted,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 6),
        }
