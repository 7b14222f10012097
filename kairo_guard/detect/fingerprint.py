"""The fingerprint index: which tenant's ingested content a record's text is.

Fingerprints are made by :mod:`kairo_guard.detect.winnow` (normalization, winnowing,
keyed hashing); this module keeps them per tenant in the store and judges overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from kairo_guard.core.exceptions import ContentRefused
from kairo_guard.core.policy import Decision
from kairo_guard.core.types import Outcome, TenantId
from kairo_guard.detect.fields import record_strings as record_strings  # re-exported
from kairo_guard.detect.fields import require_readable
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


class FingerprintIndex:
    """Fingerprints of every tenant's ingested content, and the overlap test.

    A record is a tenant's content when it shares at least ``min_shared`` fingerprints
    with that tenant (a long excerpt, wherever it sits in the record), or when at least
    ``min_fraction`` of its fingerprints are the tenant's (a short record copied whole).
    Fingerprints indexed for ``boilerplate_tenants`` or more distinct tenants
    (signatures, licence text) are discounted.
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

    def add(self, tenant: TenantId, content: object) -> int:
        """Index the text of ``content`` as ``tenant``'s; return how many fingerprints."""
        fps = self.fingerprinter.of_record(content)
        self._store.add_fingerprints(tenant, fps)
        return len(fps)

    def delete(self, tenant: TenantId) -> int:
        """Forget every fingerprint of ``tenant``."""
        return self._store.delete_fingerprints(tenant)

    def overlap(self, content: object) -> Overlap | None:
        """Return the tenant whose content ``content`` is, by the thresholds, or None.

        Raises:
            ContentRefused: while the index is stale (rule ``fingerprint.scheme-mismatch``):
                a blind index's None would read as "no tenant's text".
        """
        if self.stale is not None:
            raise ContentRefused(SCHEME_RULE, self.stale)
        fps = self.fingerprinter.of_record(content)
        if not fps:
            return None
        counts: dict[TenantId, int] = {}
        for tenants in self._store.match_fingerprints(fps).values():
            if len(tenants) >= self.boilerplate_tenants:
                continue
            for tenant in tenants:
                counts[tenant] = counts.get(tenant, 0) + 1
        if not counts:
            return None
        tenant, shared = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        found = Overlap(tenant, shared, len(fps))
        if shared >= self.min_shared or found.ratio >= self.min_fraction:
            return found
        return None


SCHEME_RULE = "fingerprint.scheme-mismatch"
"""The rule of a refusal while the index holds fingerprints of another scheme."""


def scheme_mismatch(recorded: str | None) -> Decision:
    """Return the block for every record while the index was built under ``recorded``
    (None: an index older than the scheme record) instead of :data:`SCHEME`: its
    fingerprints cannot match text fingerprinted now, so the net would be blind."""
    built = f"scheme {recorded}" if recorded else "an earlier, unrecorded scheme"
    return Decision(
        Outcome.BLOCK,
        SCHEME_RULE,
        f"the fingerprint index was built under {built}, not {SCHEME}: the net cannot "
        "recognize tenants' content until it is re-indexed",
    )


def fingerprint_check(index: FingerprintIndex) -> Callable[[object], Decision | None]:
    """Return the content check that blocks a tenant's text, whatever its label: a
    decision naming the tenant as the record's owner, or None."""

    def check(content: object) -> Decision | None:
        require_readable(content)  # raises ContentError: what cannot be read never passes
        found = index.overlap(content)
        if found is None:
            return None
        return Decision(Outcome.BLOCK, FINGERPRINT_RULE, found.reason(), owner=found.tenant)

    return check
