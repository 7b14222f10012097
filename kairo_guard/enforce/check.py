"""The decision path for one check (one ``guard.check``, decorated call or CLI scan):
context, seal, policy, content checks, records one at a time or in batches (the net
looks a batch up at once, evidence accumulates over the check, a caller holding every
record recalls those later evidence implicates: :mod:`kairo_guard.detect.accumulation`).
A shared sink awaits the index watermark first (lagging: ``index.lagging``). An error
blocks its record; the :class:`~kairo_guard.enforce.ledger.CheckLedger` accounts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kairo_guard.core.content import RawJSON, content_digest
from kairo_guard.core.exceptions import IsolationViolation, SealError
from kairo_guard.core.policy import Decision
from kairo_guard.core.report import CheckReport
from kairo_guard.core.seal import Label
from kairo_guard.core.shard_lines import ViewEntry
from kairo_guard.core.shard_lines import members as shard_members
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import Mode, Outcome, TenantId
from kairo_guard.detect.accumulation import Verdict
from kairo_guard.enforce.check_batch import (
    STAGE_NONE,
    STAGE_OWNER,
    STAGE_PASSING,
    UNSET,
    RecordParts,
    Staged,
    decide_runs,
    decide_staged,
    recall_held,
)
from kairo_guard.enforce.check_context import CheckContext as CheckContext
from kairo_guard.enforce.check_context import (
    await_index,
    content_plan,
    failed_decision,
    operator_plan,
    read_erased,
    refreshed_shards,
)
from kairo_guard.enforce.labels import (
    AMBIGUOUS_SEAL,
    AMBIGUOUS_SEAL_RULE,
    ambiguous,
    erasure_checked,
    label_facts,
    split_record,
)
from kairo_guard.enforce.ledger import CheckLedger, audit_sink_name

REFRESH_EVERY = 1024
"""Records between refreshes of the clock and the tenant's agreement status."""
REFRESH_SECONDS = 1.0
"""Longest time between those refreshes, however slowly records come."""

_MISSING, _INVALID, _VALID, _MAX_CACHED = 0, 1, 2, 4096
_MISSING_KEY, _INVALID_KEY, _ALLOW = ("missing",), ("invalid",), Outcome.ALLOW


class SinkCheck:
    """Decides records for one sink, counting and auditing as it goes."""

    def __init__(self, ctx: CheckContext, sink: Sink, mode: Mode, ambient: TenantId | None) -> None:
        self._ctx = ctx
        self.sink = sink
        self.mode = mode
        self._ambient = ambient
        self._pseudonyms: dict[str, str] = {}
        self._started = ctx.clock()
        self._mono = time.monotonic()
        self._decisions: dict[tuple[object, ...], tuple[Decision, str | None]] = {}
        self._keep: list[Label | None] = []
        self._verify = ctx.codec.verify
        self._lagging = await_index(ctx) if sink.kind.shared else None
        shared = sink.kind.shared and self._lagging is None  # content checks run here
        self._checks, self._net, self._net_passing, self._attribute = content_plan(ctx, shared)
        self._operator_rules, self._operator_checks = operator_plan(ctx, shared)
        self._checks_any = self._net_passing or bool(self._checks or self._operator_checks)
        self._shards = ctx.shards if shared else None
        self._view: dict[str, ViewEntry] | None = None  # made at generation _view_of
        self._view_of = -1
        self._refresh()
        self._index = 0
        self._finished: CheckReport | None = None
        self._ambient_pseudonym = self._pseudonym(ambient)
        header = {
            "check": f"chk_{uuid.uuid4().hex[:20]}",
            "sink": audit_sink_name(sink, self._pseudonym),
            "kind": sink.kind.value,
            "sink_tenant": self._pseudonym(sink.tenant),
            "mode": mode.value,
        }
        self.ledger = CheckLedger(ctx.audit, ctx.max_violations, header)
        """Counts, violations and audit rows of this check."""
        self._account = self.ledger.account
        self.bytes_scanned = 0  # bytes of raw input read for it, where the caller counts them
        self._span: Any = None
        self._span_guard: Any = None
        if ctx.telemetry is not None:
            self._span, self._span_guard = ctx.telemetry.start_check(
                self, header, self._ambient_pseudonym
            )

    def _refresh(self) -> None:
        # every REFRESH_EVERY records and REFRESH_SECONDS: a slow stream sees revocations
        self._countdown = REFRESH_EVERY
        self._refresh_at = time.monotonic() + REFRESH_SECONDS
        self._now = self._ctx.clock()
        tenant = self.sink.tenant
        self._agreement = tenant is not None and self._ctx.agreement_active(tenant, self._now)
        self._erased = read_erased(self._ctx)
        self._decisions.clear()
        self._keep.clear()
        if self._net is not None:
            self._net.refresh()  # what was indexed since: a long check sees it too
        shards = refreshed_shards(self._shards)
        self._clean = None if shards is None else shards.clean
        self._vetted, self._view = shards, None

    def _next(self) -> int:
        """The next record's index; the check refreshes first when one is due."""
        index, self._index = self._index, self._index + 1
        self._countdown -= 1
        if not self._countdown or time.monotonic() > self._refresh_at:
            self._refresh()
        return index

    @property
    def batches(self) -> bool:
        """Whether records are better decided in batches (:meth:`decide_batch`): the
        fingerprint net looks records up at this sink."""
        return self._net is not None

    def admit(self, item: object) -> bool:
        """Decide ``item`` and say whether it may pass in this check's mode.

        Raises:
            IsolationViolation: in ``enforce`` mode, for a refused record (the check is
                finished first, so the report is complete up to it).
        """
        if self.decide(item).outcome is _ALLOW or self.mode is Mode.OBSERVE:
            return True
        if self.mode is Mode.ENFORCE:
            raise IsolationViolation(self.finish())
        return False

    def decide(self, item: object) -> Decision:
        """Decide one record (any shape) and account for it."""
        if ambiguous(item):  # two seals: neither may decide
            return self.block_unreadable(AMBIGUOUS_SEAL_RULE, AMBIGUOUS_SEAL, None)
        content, seal = split_record(item)
        return self.decide_parts(content, seal)

    def decide_parts(
        self,
        content: object,
        seal: object,
        digest: str | None = None,
        position: int | None = None,
        confirm: Callable[[], Decision | None] | None = None,
        *,
        json_bytes: bool = False,
    ) -> Decision:
        """Decide one record given its content and seal.

        Args:
            content: the record's content (without its seal).
            seal: the seal string, or None.
            digest: the content digest if the caller computed it already.
            position: where the record stands in its input (default: the count so far).
            confirm: called only for a record about to be allowed; a decision it returns
                replaces the allow (a caller's last check on what it parsed).
            json_bytes: ``content`` is JSON text, parsed only if a content check needs it.
        """
        index = self._next()
        owner: str | None = self._ambient_pseudonym
        try:
            decision, owner, digest, vetted = self._label_decision(content, seal, digest)
            # Content checks: for records about to pass (but those of a vetted shard
            # with nothing indexed since against them), and for unlabeled records at a
            # shared sink, where the fingerprints say whose content it is.
            if (
                decision.outcome is _ALLOW
                and (confirm is not None or (self._checks_any and not vetted))
            ) or (seal is None and self._attribute):
                if json_bytes:
                    content = RawJSON(content)  # type: ignore[call-overload]
                decision = self._content_checks(content, decision, confirm, vetted=vetted)
                if decision.owner is not None:
                    owner = self._pseudonym(decision.owner)
        except Exception as exc:  # noqa: BLE001 - fail closed: an error in the guard blocks
            decision = failed_decision(exc)
        self._account(index if position is None else position, decision, digest, owner)
        return decision

    def decide_many(self, items: Iterable[object]) -> list[Decision]:
        """Decide records (any shape) as :meth:`decide` does, the fingerprint net on
        all of them at once (:meth:`decide_batch`)."""
        return decide_runs(items, self.decide_batch, self.decide)

    def decide_batch(self, records: Sequence[RecordParts]) -> list[Decision]:
        """Decide records given their parts, as :meth:`decide_parts` does one, with one
        fingerprint lookup for the batch; none is accounted before all are decided, so
        evidence the batch accumulates (:mod:`kairo_guard.detect.accumulation`) blocks all
        of its records that carry it."""
        return decide_staged(
            [self._stage(p) for p in records], self._net, self._content_checks,
            self._pseudonym, self._account, self.ledger.account_allowed,
        )  # fmt: skip

    def take_vetted(self, lines: list[Any], start: int, position: int) -> int:
        """Decide and account the clean records of vetted shards in ``lines`` from
        ``start`` (numbered from ``position``) up to the first line that is not one;
        return where they end (``start``: none; decide that line the long way). Decide
        the lines staged before first: decisions are accounted in order."""
        view = self._vetted_view()
        if view is None:
            return start
        stop = start + self._countdown - 1  # a refresh falls due on a record of the long way
        end, rows = shard_members(lines, start, stop, view, _ALLOW, position)
        if rows:
            self._index += len(rows)
            self._countdown -= len(rows)
            self.ledger.account_allowed(rows)
        return int(end)

    def _vetted_view(self) -> dict[str, ViewEntry] | None:
        shards = self._vetted
        if shards is None or self._countdown <= 1 or time.monotonic() > self._refresh_at:
            return None  # not at a shared sink with shards, or a refresh is due
        if self._view is None or self._view_of != shards.generation:
            self._view_of, self._view = shards.generation, {}
            for shard_id, label, index, dirty in shards.view():
                decision, owner = self._by_label(label, True)
                if decision.outcome is _ALLOW and label.tenant is None:
                    self._view[shard_id] = (index, dirty, decision.rule, owner)
        return self._view

    def _stage(self, parts: RecordParts) -> Staged:
        """Decide a record up to the content checks; say which it needs."""
        index = self._next()
        content, seal, digest, _, confirm, _ = parts
        owner: str | None = self._ambient_pseudonym
        stage = STAGE_NONE
        try:
            decision, owner, digest, vetted = self._label_decision(content, seal, digest)
            if decision.outcome is _ALLOW:
                if confirm is not None:
                    decision = confirm() or decision
                if decision.outcome is _ALLOW and self._checks_any and not vetted:
                    stage = STAGE_PASSING
            elif seal is None and self._attribute:
                stage = STAGE_OWNER
            if stage and parts.json_bytes:
                content = RawJSON(content)  # type: ignore[call-overload]
        except Exception as exc:  # noqa: BLE001 - fail closed: an error in the guard blocks
            decision, stage = failed_decision(exc), STAGE_NONE
        position = index if parts.position is None else parts.position
        return Staged(position, decision, owner, digest, content, stage)

    def _label_decision(
        self, content: object, seal: object, digest: str | None
    ) -> tuple[Decision, str | None, str | None, bool]:
        """Return the decision by the record's seal (or its absence), its owner's
        pseudonym, its digest and whether it is a clean record of a vetted shard."""
        if digest is None:
            digest = content_digest(content)
        if self._lagging is not None:
            return self._lagging, self._ambient_pseudonym, digest, False
        if seal is None:
            decision, owner = self._cached(_MISSING_KEY, _MISSING, None, False, False)
            return decision, owner, digest, False
        try:
            label, sealed_digest = self._verify(seal)
        except SealError as exc:
            decision, owner = self._cached(_INVALID_KEY, _INVALID, None, False, False)
            return decision._replace(reason=f"{decision.reason} ({exc})"), owner, digest, False
        match = sealed_digest == digest
        decision, owner = self._by_label(label, match)
        ok = match and label.tenant is None and decision.outcome is _ALLOW  # may skip checks
        clean = self._clean
        return decision, owner, digest, ok and clean is not None and clean(label, digest)

    def _by_label(self, label: Label, match: bool) -> tuple[Decision, str | None]:
        expired = label.expires_at is not None and self._now >= label.expires_at
        # ``label`` is the codec's shared object for every seal that differs only in
        # its digest: its identity keys the decision cache.
        key = (id(label), match, expired)
        return self._decisions.get(key) or self._cached(key, _VALID, label, match, expired)

    def _content_checks(
        self,
        content: object,
        decision: Decision,
        confirm: Callable[[], Decision | None] | None,
        verdict: Verdict = UNSET,
        *,
        vetted: bool = False,
    ) -> Decision:
        if decision.outcome is _ALLOW:
            if confirm is not None:
                decision = confirm() or decision
            if vetted:
                return decision
            if self._net_passing and decision.outcome is _ALLOW:
                decision = self._net_verdict(content, True, verdict) or decision
            checks = (
                self._operator_checks if decision.rule in self._operator_rules else self._checks
            )
            for check in checks:
                if decision.outcome is not _ALLOW:
                    break
                decision = check(content) or decision
        elif self._attribute:  # an unlabeled record: whose content is it?
            decision = self._net_verdict(content, False, verdict) or decision
        return decision

    def _net_verdict(self, content: object, passing: bool, verdict: Verdict) -> Decision | None:
        if verdict is UNSET and self._net is not None:  # one record: a batch of one
            verdict = self._net.decide((content,), (passing,))[0]
        if isinstance(verdict, Exception):
            raise verdict
        return verdict

    def block_unreadable(
        self, rule: str, reason: str, digest: str | None, position: int | None = None
    ) -> Decision:
        """Account for a record that could not even be read (malformed, oversized)."""
        decision, self._index = Decision(Outcome.BLOCK, rule, reason), self._index + 1
        at = self._index - 1 if position is None else position
        self._account(at, decision, digest, self._ambient_pseudonym)
        return decision

    def _cached(
        self,
        key: tuple[object, ...],
        status: int,
        label: Label | None,
        match: bool,
        expired: bool,
    ) -> tuple[Decision, str | None]:
        # Within one check the sink, ambient tenant and agreement are fixed, so the
        # decision (and whose record it is) depends only on the label's fields, digest
        # match and expiry: most records are one dict lookup.
        facts = label_facts(
            label, self.sink, self._ambient, sealed=status != _MISSING, valid=status == _VALID,
            match=match, expired=expired, agreement=self._agreement,
        )  # fmt: skip
        owner = label.tenant if label is not None and label.tenant else self._ambient
        entry = erasure_checked(
            self._ctx.policy.decide(facts), label, self._pseudonym(owner), self._erased
        )
        if len(self._decisions) < _MAX_CACHED:
            self._decisions[key] = entry
            self._keep.append(label)  # ids in keys stay valid while the entry lives
        return entry

    def _pseudonym(self, tenant: str | None) -> str | None:
        found = None if tenant is None else self._pseudonyms.get(tenant)
        if tenant is not None and found is None:
            found = self._pseudonyms[tenant] = self._ctx.pseudonym(tenant)
        return found

    def keep_for_recall(self) -> None:
        """Hold what :meth:`recall` needs: only for a caller that has every record still."""
        if self._net is not None:
            self._net.holding = True

    def recall(self) -> list[int]:
        """Block the records let through that later evidence implicates (positions)."""
        return [] if self._net is None else recall_held(self._net, self.ledger, self._pseudonym)

    def finish(self) -> CheckReport:
        """Close the check: audit its summary and return the report (idempotent)."""
        if self._finished is not None:
            return self._finished
        report = self.ledger.close(
            sink=self.sink,
            mode=self.mode,
            total=self._index,
            started_at=self._started,
            duration_s=time.monotonic() - self._mono,
        )
        self._finished = report
        if self._ctx.telemetry is not None:
            if self._span_guard is not None:
                self._span_guard.detach()
            self._ctx.telemetry.finish_check(
                self._span,
                report,
                sink=str(self.ledger.header["sink"]),
                policy=self._ctx.policy,
                bytes_scanned=self.bytes_scanned,
            )
        return report
