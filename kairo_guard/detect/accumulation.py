"""The fingerprint net for one check: batched lookups, evidence accumulated over records.

Per record, a tenant's text is caught when the record shares at least ``min_shared`` (3)
fingerprints with the tenant (:class:`~kairo_guard.detect.fingerprint.FingerprintIndex`).
Cut a tenant's document into pieces of 100 characters, each inside other text, and every
record shares only 1 or 2: each passes alone. A :class:`CheckNet` keeps, for the records
of one check that are about to pass, the distinct fingerprints each tenant shares with
them (boilerplate discounted, as per record). Once one tenant's count reaches
:data:`ACCUMULATED_MIN_SHARED` (3, the per-record threshold: the check as a whole is held
to what one record is), every record of the check that shares any fingerprint with that
tenant blocks under :data:`ACCUMULATED_RULE`, owned by the tenant: those of the batch in
which the threshold is crossed (a batch is decided whole before any of it passes), and
every later one. A check of records that are all still at hand (``guard.check``, a
decorated function given a list, a table or a dataset: decided whole before the function
runs) also blocks the ones let through in its earlier batches (:meth:`CheckNet.recall`;
their audit rows are written again with the block). A stream's records are gone once
consumed: it blocks from the record that crosses the threshold on; in ``enforce`` mode
that fails the check. A record about to pass that is the tenant's by its own
fingerprints blocks as such and its fingerprints count too: the check holds a copy of
that tenant's text, and the other pieces of it go with it. Records blocked anyway
(unlabeled, customer content) add nothing: they reach no sink.

False positives, measured (``benchmarks/bench_fingerprint_check.py --false-positives``,
``benchmarks/RESULTS.md``): 335 public documents (docstrings of packages no other
installed package copies) indexed as 6 tenants' content, then 40,000 records of 150-400
characters cut from every other licence, README, package document and docstring on the
machine, checked as operator data in batches of 1,000: **0 blocked** at thresholds 2 to
5, as 40 checks of 1,000 or as one check of all (95% upper bound 0.0075%). Recall of the
three 100-character pieces of one document in one batch of 1,000: 84% at 3 (84% at 2,
78% at 4, 64% at 5; in about half the trials one piece is caught alone and takes the
others with it; pieces normalizing to fewer than 71 characters may share no fingerprint).
When the indexed documents are public files that other files copy in part (licences,
generated code), 0.9% of the other records block as accumulated, 0.5% from files with no
record caught alone, whatever the threshold: the check holds those tenants' text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kairo_guard.core.policy import Decision
from kairo_guard.core.types import Outcome, TenantId
from kairo_guard.detect.fields import require_readable
from kairo_guard.detect.fingerprint import (
    FINGERPRINT_RULE,
    NO_EVIDENCE,
    Evidence,
    FingerprintIndex,
)
from kairo_guard.detect.prefilter import Fingerprints

ACCUMULATED_RULE = "fingerprint.accumulated"
"""The rule of a block for records that together, not alone, are a tenant's text."""
ACCUMULATED_MIN_SHARED = 3
"""Distinct fingerprints of one tenant, across the passing records of one check, that
block those records."""

Verdict = Decision | Exception | None
"""Per record: a block, the error that stopped its lookup (it must block), or None."""


class CheckNet:
    """The fingerprint net as one check runs it.

    Args:
        index: the fingerprint index.
        threshold: distinct fingerprints of one tenant across the check's passing
            records that block them (see the module docstring).
    """

    def __init__(self, index: FingerprintIndex, threshold: int = ACCUMULATED_MIN_SHARED) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self._index = index
        self.threshold = threshold
        self._tally: dict[TenantId, set[int]] = {}
        self._fresh = False
        self.last_evidence: list[Evidence] = []
        """Per record of the last :meth:`decide`: the evidence it added (passing records
        the net let through), else :data:`NO_EVIDENCE`."""
        self._held: list[tuple[Any, Evidence]] = []
        self.holding = False
        """Whether :meth:`hold` keeps records: set by a caller that will :meth:`recall`
        (one that has every record still); a stream's held records would only grow."""

    def refresh(self) -> None:
        """Make the next lookup read what was indexed since the last refresh first (when
        the check starts and at each of its refreshes). Lazily: a check whose records
        are all decided by their labels (customer content at a shared sink blocks on
        its seal) never loads the index; a lookup that cannot refresh raises, so its
        records block."""
        self._fresh = False

    def decide(
        self,
        contents: Sequence[object],
        passing: Sequence[bool],
        fingerprints: Sequence[Fingerprints] | None = None,
    ) -> list[Verdict]:
        """Return, per record, the net's block or None, with one store query for all.

        Args:
            contents: the records' contents.
            passing: per record, whether it is about to pass (its evidence accumulates
                and it may block for the accumulated evidence); otherwise the net only
                names the owner of a record that blocks anyway.
            fingerprints: the records' fingerprints when the caller has them already
                (of readable records: vetting keeps them for its shard).
        """
        verdicts: list[Verdict] = [None] * len(contents)
        arrays: list[Fingerprints] = []
        looked: list[int] = []
        for i, content in enumerate(contents):
            try:
                if fingerprints is not None:
                    arrays.append(fingerprints[i])
                    looked.append(i)
                    continue
                require_readable(content)
                arrays.append(self._index.fingerprints_of(content))
            except Exception as exc:  # noqa: BLE001 - this record blocks, the rest go on
                verdicts[i] = exc
            else:
                looked.append(i)
        try:
            found = self._index.evidence(arrays, refresh=not self._fresh)
        except Exception as exc:  # noqa: BLE001 - every record looked up blocks
            for i in looked:
                verdicts[i] = exc
            return verdicts
        self._fresh = True
        evidence: list[Evidence] = [NO_EVIDENCE] * len(contents)
        judge = self._index.judge
        for i, seen in zip(looked, found, strict=True):
            if not seen.shared:
                continue
            overlap = judge(seen)
            if overlap is not None:
                verdicts[i] = Decision(
                    Outcome.BLOCK, FINGERPRINT_RULE, overlap.reason(), owner=overlap.tenant
                )
                if passing[i]:  # a copy of the tenant's text: its evidence counts too
                    self._add(seen.shared)
            elif passing[i]:
                evidence[i] = seen
                self._add(seen.shared)
        for i, seen in enumerate(evidence):
            if seen.shared:
                verdicts[i] = self._crossed(seen)
                if verdicts[i] is not None:
                    evidence[i] = NO_EVIDENCE
        self.last_evidence = evidence
        return verdicts

    def hold(self, token: Any, evidence: Evidence) -> None:
        """Remember a record let through with ``evidence`` (``token`` names it to the
        caller): :meth:`recall` blocks it if its tenant's count reaches the threshold
        later in the check."""
        if self.holding:
            self._held.append((token, evidence))

    def recall(self) -> list[tuple[Any, Decision]]:
        """The held records whose evidence now blocks them (a later record of the check
        took its tenant over the threshold), each with its block, and forget them. Only
        a caller that still holds every record (a list checked before any is used) can
        act on it: a stream's records are gone."""
        recalled, kept = [], []
        for token, seen in self._held:
            decision = self._crossed(seen)
            if decision is None:
                kept.append((token, seen))
            else:
                recalled.append((token, decision))
        self._held = kept
        return recalled

    def _add(self, shared: Mapping[TenantId, frozenset[int]]) -> None:
        tally = self._tally
        for tenant, fps in shared.items():
            tally.setdefault(tenant, set()).update(fps)

    def _crossed(self, evidence: Evidence) -> Decision | None:
        over = [
            (len(self._tally[t]), t)
            for t in evidence.shared
            if len(self._tally[t]) >= self.threshold
        ]
        if not over:
            return None
        count, tenant = max(over)
        return Decision(
            Outcome.BLOCK,
            ACCUMULATED_RULE,
            f"text shares {len(evidence.shared[tenant])} of {evidence.total} fingerprints with "
            f"a tenant's ingested content, and this check's records {count} (threshold "
            f"{self.threshold}): together they are that content",
            owner=tenant,
        )
