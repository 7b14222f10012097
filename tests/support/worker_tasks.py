"""Functions run in worker processes by the tests of kairo_guard.workers (importable by
name, as a spawned process needs)."""

from __future__ import annotations

import os
from typing import Any

from kairo_guard import Guard
from kairo_guard.workers import GuardForked, GuardSpec


def check_in_worker(spec: GuardSpec, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Open this process's guard from ``spec`` (twice: the same one) and check records."""
    guard = Guard.from_spec(spec)
    assert Guard.from_spec(spec) is guard
    report = guard.check(records, sink="shared-training", mode="filter")
    guard.audit.flush()
    return {
        "pid": os.getpid(),
        "allowed": report.allowed,
        "rules": sorted(v.rule for v in report.violations),
        "signs": guard.vetting.writer.can_sign,
    }


def use_inherited(guard: Guard, spec: GuardSpec, records: list[dict[str, Any]]) -> None:
    """In a forked child: the inherited guard refuses to work, one opened here works."""
    try:
        guard.check(records, sink="shared-training")
    except GuardForked:
        pass
    else:
        os._exit(3)
    guard.close()  # the parent's to close: nothing happens
    result = check_in_worker(spec, records)
    os._exit(0 if result["allowed"] == 1 and not result["signs"] else 4)
