"""A batch of records through a sink check: what :meth:`SinkCheck.decide_batch` runs.

Each record is first decided up to its content checks (seal, policy, the caller's
confirmation); then the fingerprint net looks up every record that needs it at once
(:class:`~kairo_guard.detect.accumulation.CheckNet`: one store query a batch, evidence
accumulated over the check); then each record's content checks finish, in order, and
each decision is accounted for. Nothing of a batch is accounted (or passes) before all
of it is decided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from kairo_guard.core.policy import Decision
from kairo_guard.core.types import Outcome
from kairo_guard.detect.accumulation import CheckNet, Verdict
from kairo_guard.detect.fingerprint import Evidence
from kairo_guard.enforce.check_context import failed_decision
from kairo_guard.enforce.labels import ambiguous, split_record
from kairo_guard.enforce.ledger import CheckLedger

UNSET: Any = object()
"""No verdict of the net yet: ask it."""
STAGE_NONE, STAGE_PASSING, STAGE_OWNER = 0, 1, 2
_ALLOW = Outcome.ALLOW


class RecordParts(NamedTuple):
    """One record for :meth:`SinkCheck.decide_batch`: the arguments of
    :meth:`SinkCheck.decide_parts`."""

    content: object
    seal: object
    digest: str | None = None
    position: int | None = None
    confirm: Callable[[], Decision | None] | None = None
    json_bytes: bool = False


class Staged(NamedTuple):
    """A record decided up to its content checks; ``stage`` says which it needs."""

    position: int
    decision: Decision
    owner: str | None
    digest: str | None
    content: object
    stage: int


def decide_staged(
    staged: Sequence[Staged],
    net: CheckNet | None,
    content_checks: Callable[[object, Decision, None, Verdict], Decision],
    pseudonym: Callable[[str | None], str | None],
    account: Callable[[int, Decision, str | None, str | None], None],
    account_allowed: Callable[[Sequence[tuple[int, Outcome, str, str | None, str | None]]], None]
    | None = None,
) -> list[Decision]:
    """Finish the decisions of staged records: the net on all at once, then each
    record's ``content_checks`` with the net's verdict; account for each in order."""
    chosen = [i for i, s in enumerate(staged) if s.stage]
    if not chosen:  # decided already (vetted shards, blocks by label): account in order
        if account_allowed is not None and all(s.decision.outcome is _ALLOW for s in staged):
            account_allowed(
                [(s.position, _ALLOW, s.decision.rule, s.digest, s.owner) for s in staged]
            )
        else:
            for s in staged:
                account(s.position, s.decision, s.digest, s.owner)
        return [s.decision for s in staged]
    verdicts: list[Verdict] = [UNSET] * len(staged)
    evidence: dict[int, Evidence] = {}
    if net is not None:
        passing = [staged[i].stage == STAGE_PASSING for i in chosen]
        found = net.decide([staged[i].content for i in chosen], passing)
        for i, verdict, seen in zip(chosen, found, net.last_evidence, strict=True):
            verdicts[i] = verdict
            if seen.shared:
                evidence[i] = seen
    decisions = []
    for i, (s, verdict) in enumerate(zip(staged, verdicts, strict=True)):
        decision, owner = s.decision, s.owner
        if s.stage:
            try:
                decision = content_checks(s.content, decision, None, verdict)
                if decision.owner is not None:
                    owner = pseudonym(decision.owner)
            except Exception as exc:  # noqa: BLE001 - fail closed: an error in the guard blocks
                decision = failed_decision(exc)
        account(s.position, decision, s.digest, owner)
        decisions.append(decision)
        if net is not None and i in evidence and decision.outcome is _ALLOW:
            net.hold((s.position, decision.rule, s.digest), evidence[i])
    return decisions


def decide_runs(
    items: Iterable[object],
    decide_batch: Callable[[Sequence[RecordParts]], list[Decision]],
    decide: Callable[[object], Decision],
) -> list[Decision]:
    """Decide records (any shape) in order: runs of them as one batch each, and a record
    with two seals alone, in its place (``decide`` blocks it: neither seal may decide)."""
    decisions: list[Decision] = []
    parts: list[RecordParts] = []
    for item in items:
        if ambiguous(item):
            decisions += decide_batch(parts)
            parts = []
            decisions.append(decide(item))
            continue
        parts.append(RecordParts(*split_record(item)))
    return decisions + decide_batch(parts)


def recall_held(
    net: CheckNet, ledger: CheckLedger, pseudonym: Callable[[str | None], str | None]
) -> list[int]:
    """Account as blocked the records the check let through whose evidence now blocks
    them (:meth:`~kairo_guard.detect.accumulation.CheckNet.recall`); their positions."""
    recalled = []
    for (position, rule, digest), decision in net.recall():
        ledger.revise(position, rule, decision, digest, pseudonym(decision.owner))
        recalled.append(position)
    return recalled
