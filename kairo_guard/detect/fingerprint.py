"""The fingerprint index: which tenant's ingested content a record's text is.

Fingerprints are made by :mod:`kairo_guard.detect.winnow` (normalization, winnowing,
keyed hashing); this module keeps them per tenant in the store and judges overlap.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from kairo_guard.core.exceptions import ContentRefused
from kairo_guard.core.policy import Decision
from kairo_guard.core.types import Outcome, TenantId
from kairo_guard.detect.fields import record_strings as record_strings  # re-exported
from kairo_guard.detect.fields import require_readable
from kairo_guard.detect.identifiers import CustomerIdentifiers
from kairo_guard.detect.prefilter import Fingerprints, Prefilter, sorted_unique
from kairo_guard.detect.winnow import GUARANTEED_SPAN as GUARANTEED_SPAN  # re-exported
from kairo_guard.detect.winnow import MIN_SHARED_FINGERPRINTS as MIN_SHARED_FINGERPRINTS
from kairo_guard.detect.winnow import SCHEME as SCHEME
from kairo_guard.detect.winnow import Fingerprinter as Fingerprinter
from kairo_guard.detect.winnow import K as K
from kairo_guard.detect.winnow import W as W
from kairo_guard.detect.winnow import normalize as normalize
from kairo_guard.detect.winnow import record_text as record_text
from kairo_guard.store.base import Store

FINGERPRINT_RULE = "fingerprint.tenant-content"
"""The rule of a refusal for text that is a tenant's ingested content."""


class Overlap(NamedTuple):
    """How much of a record's text is one tenant's indexed content."""

    tenant: TenantId
    shared: int
    """Fingerprints of the record found among the tenant's (boilerplate discounted)."""
    total: int
    """Fingerprints of the record."""

    @property
    def ratio(self) -> float:
        """Fraction of the record's fingerprints that are the tenant's."""
        return self.shared / self.total if self.total else 0.0

    def reason(self) -> str:
        """The refusal's reason: counts and ratio, never the text or the tenant."""
        return (
            f"text overlaps a tenant's ingested content: {self.shared} of "
            f"{self.total} fingerprints ({self.ratio:.0%})"
        )


class Evidence(NamedTuple):
    """What one record's fingerprints say: how many it has and which tenants share some."""

    total: int
    """Fingerprints of the record."""
    shared: Mapping[TenantId, frozenset[int]]
    """Per tenant, the record's fingerprints indexed as theirs (boilerplate discounted)."""


NO_EVIDENCE = Evidence(0, {})


class FingerprintIndex:
    """Fingerprints of every tenant's ingested content, and the overlap test.

    A record is a tenant's content when it shares at least ``min_shared`` fingerprints
    with that tenant (a long excerpt, wherever it sits in the record), or when at least
    ``min_fraction`` of its fingerprints are the tenant's (a short record copied whole).
    Fingerprints indexed for ``boilerplate_tenants`` or more distinct tenants
    (signatures, licence text) are discounted.

    Records are looked up in batches (:meth:`overlaps`): an in-memory
    :class:`~kairo_guard.detect.prefilter.Prefilter` of every indexed fingerprint picks
    the few that may be indexed, and one store query confirms them for the batch.
    """

    def __init__(
        self,
        store: Store,
        fingerprinter: Fingerprinter,
        *,
        min_shared: int = MIN_SHARED_FINGERPRINTS,
        min_fraction: float = 0.5,
        boilerplate_tenants: int = 5,
    ) -> None:
        if min_shared < 1 or not 0 < min_fraction <= 1 or boilerplate_tenants < 2:
            raise ValueError("min_shared >= 1, 0 < min_fraction <= 1, boilerplate_tenants >= 2")
        self._store = store
        self.fingerprinter = fingerprinter
        self.min_shared = min_shared
        self.min_fraction = min_fraction
        self.boilerplate_tenants = boilerplate_tenants
        self.stale: str | None = None
        """Why the index cannot be trusted (built under another scheme), or None: set,
        :meth:`overlap` refuses instead of answering."""
        self.identifiers: CustomerIdentifiers | None = None
        """Adds the keyed hashes of a customer's identifiers when content is indexed
        (:mod:`kairo_guard.detect.identifiers`)."""
        self.prefilter = Prefilter(store)
        """Every indexed fingerprint in memory (loaded at first use)."""
        self.on_delete: Callable[[TenantId, int], None] | None = None
        """Told of each :meth:`delete` (tenant, rows): the guard audits it there, so a
        deletion from Python is on record as one from the CLI is."""
        self._of_text_array: Callable[[str], Fingerprints] | None = getattr(
            fingerprinter, "of_text_array", None
        )

    def add(self, tenant: TenantId, content: object) -> int:
        """Index the text of ``content`` as ``tenant``'s; return how many fingerprints
        (with the keyed hashes of its identifiers, when :attr:`identifiers` is set)."""
        fps = self.fingerprinter.of_record(content)
        if self.identifiers is not None:
            fps = fps | self.identifiers.of_record(content)
        self._store.add_fingerprints(tenant, fps)
        return len(fps)

    def delete(self, tenant: TenantId) -> int:
        """Forget every fingerprint of ``tenant`` (audited: ``fingerprints.delete``, its
        content no longer blocks shared sinks); return how many rows went."""
        rows = self._store.delete_fingerprints(tenant)
        if self.on_delete is not None:
            self.on_delete(tenant, rows)
        return rows

    def fingerprints_of(self, content: object) -> Fingerprints:
        """Return the fingerprints of a record's text, sorted, without repeats.

        Raises:
            ContentError: text the reader cannot read.
        """
        of_array = self._of_text_array
        if of_array is not None:
            return of_array(record_text(content))
        return sorted_unique(list(self.fingerprinter.of_record(content)))

    def evidence(
        self, fingerprints: Sequence[Fingerprints], *, refresh: bool = True
    ) -> list[Evidence]:
        """Return what each record's fingerprints say, with one store query for all.

        Args:
            fingerprints: per record, its fingerprints (:meth:`fingerprints_of`).
            refresh: read what was indexed since the prefilter's last refresh first
                (a caller that refreshes on its own schedule passes False).

        Raises:
            ContentRefused: while the index is stale (rule ``fingerprint.scheme-mismatch``).
            StoreError: the store cannot be read.
        """
        if self.stale is not None:
            raise ContentRefused(SCHEME_RULE, self.stale)
        prefilter = self.prefilter
        if refresh or not prefilter.loaded:
            prefilter.refresh()
        sizes = [len(f) for f in fingerprints]
        if not sizes or not sum(sizes):
            return [Evidence(n, {}) for n in sizes]
        every = np.concatenate(fingerprints)
        hit = prefilter.contains(every)
        if not hit.any():
            return [Evidence(n, {}) for n in sizes]
        owners = np.repeat(np.arange(len(sizes)), sizes)[hit]
        candidates = every[hit]
        matched = self._store.match_fingerprints(np.unique(candidates).tolist())
        limit = self.boilerplate_tenants
        found: dict[int, dict[TenantId, set[int]]] = {}
        for owner, fp in zip(owners.tolist(), candidates.tolist(), strict=True):
            tenants = matched.get(fp)
            if tenants is None or len(tenants) >= limit:
                continue
            shared = found.setdefault(owner, {})
            for tenant in tenants:
                shared.setdefault(tenant, set()).add(fp)
        return [
            Evidence(n, {t: frozenset(f) for t, f in found[i].items()})
            if i in found
            else Evidence(n, {})
            for i, n in enumerate(sizes)
        ]

    def judge(self, evidence: Evidence) -> Overlap | None:
        """Return the tenant whose content a record is, by the thresholds, or None."""
        if not evidence.shared:
            return None
        tenant, fps = max(evidence.shared.items(), key=lambda kv: (len(kv[1]), kv[0]))
        found = Overlap(tenant, len(fps), evidence.total)
        if found.shared >= self.min_shared or found.ratio >= self.min_fraction:
            return found
        return None

    def overlaps(self, contents: Sequence[object]) -> list[Overlap | None]:
        """Return, for each of ``contents``, the tenant whose content it is, or None
        (:meth:`overlap` for a batch, with one store query for the batch).

        Raises:
            ContentRefused: while the index is stale (rule ``fingerprint.scheme-mismatch``):
                a blind index's None would read as "no tenant's text".
            ContentError: text the reader cannot read.
            StoreError: the store cannot be read.
        """
        if self.stale is not None:
            raise ContentRefused(SCHEME_RULE, self.stale)
        arrays = [self.fingerprints_of(content) for content in contents]
        return [self.judge(e) for e in self.evidence(arrays)]

    def overlap(self, content: object) -> Overlap | None:
        """Return the tenant whose content ``content`` is, by the thresholds, or None.

        Raises:
            ContentRefused: while the index is stale (rule ``fingerprint.scheme-mismatch``):
                a blind index's None would read as "no tenant's text".
        """
        return self.overlaps((content,))[0]


SCHEME_RULE = "fingerprint.scheme-mismatch"
"""The rule of a refusal while the index holds fingerprints of another scheme."""


def keyed_scheme(key: bytes) -> str:
    """:data:`SCHEME` bound to the fingerprint key: what a store records, so that a
    process whose key ring differs (its fingerprints match nothing stored) finds out
    instead of passing everything. The key is named by a one-way tag, never shown."""
    tag = hmac.new(key, b"kairo-guard fingerprint key id", hashlib.sha256).hexdigest()[:16]
    return f"{SCHEME}+key-{tag}"


def scheme_mismatch(recorded: str | None, expected: str = SCHEME) -> Decision:
    """Return the block for every record while the index was built under ``recorded``
    (None: an index older than the scheme record) instead of ``expected``: its
    fingerprints cannot match text fingerprinted now, so the net would be blind."""
    built = f"scheme {recorded}" if recorded else "an earlier, unrecorded scheme"
    same_scheme = recorded is not None and recorded.split("+key-")[0] == SCHEME
    why = "another key ring" if same_scheme else f"{built}, not {SCHEME}"
    return Decision(
        Outcome.BLOCK,
        SCHEME_RULE,
        f"the fingerprint index was built under {why}: the net cannot recognize "
        "tenants' content until it is re-indexed (or this process is given the ring "
        "the index was built with)",
    )


class FingerprintCheck:
    """The content check that blocks a tenant's text, whatever its label: called on a
    record, a decision naming the tenant as the record's owner, or None.

    A sink check recognizes it among its content checks and runs the net on batches of
    records through :class:`~kairo_guard.detect.accumulation.CheckNet` over
    :attr:`index` instead (one store query a batch, evidence accumulated over the check).
    """

    def __init__(self, index: FingerprintIndex) -> None:
        self.index = index

    def __call__(self, content: object) -> Decision | None:
        require_readable(content)  # raises ContentError: what cannot be read never passes
        found = self.index.overlap(content)
        if found is None:
            return None
        return Decision(Outcome.BLOCK, FINGERPRINT_RULE, found.reason(), owner=found.tenant)


def fingerprint_check(index: FingerprintIndex) -> FingerprintCheck:
    """Return the content check that blocks a tenant's text (:class:`FingerprintCheck`)."""
    return FingerprintCheck(index)
