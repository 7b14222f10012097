"""The fingerprint net as the guard runs it: index a tenant's content, export the filter.

:class:`FingerprintNet` records each indexing in the audit log (counts and the tenant's
pseudonym, never text) and writes the index as a signed Bloom filter for workers that
cannot reach the store (:mod:`kairo_guard.detect.bloom`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from kairo_guard.core.content import content_digest
from kairo_guard.core.keys import PURPOSE_FILTER, KeyRing
from kairo_guard.core.types import AuditAppender, TenantId, validate_tenant
from kairo_guard.detect.bloom import FilterError, FingerprintFilter
from kairo_guard.detect.fingerprint import SCHEME, FingerprintIndex


class FingerprintRows(Protocol):
    """The part of the store the export reads."""

    def iter_fingerprints(self) -> Iterator[tuple[int, TenantId]]:
        """Yield ``(fingerprint, tenant)`` rows ordered by fingerprint."""
        ...


class FingerprintNet:
    """Indexing and filter export over one :class:`FingerprintIndex`.

    Args:
        index: the fingerprint index.
        store: where the index keeps its fingerprints (read whole for the export).
        keys: the key ring (pseudonyms; the filter's signing subkey).
        audit: where indexing and exports are recorded.
        clock: Unix-seconds clock (the filter's creation time).
        stale: why the index cannot be trusted (built under another fingerprint
            scheme), or None; a stale index is not exported.
    """

    def __init__(
        self,
        index: FingerprintIndex,
        store: FingerprintRows,
        keys: KeyRing,
        audit: AuditAppender,
        clock: Callable[[], float],
        stale: str | None = None,
    ) -> None:
        self._index = index
        self._store = store
        self._keys = keys
        self._audit = audit
        self._clock = clock
        self._stale = stale
        self.indexed = 0
        """Fingerprints indexed through this net since it was opened (for reports)."""

    def index(self, tenant: TenantId, content: object, *, digest: str | None = None) -> int:
        """Fingerprint ``content`` as ``tenant``'s customer content (the laundering net).

        The Sealer calls this for every piece of customer content it seals, before it
        signs the label (no seal without index); the store keeps each (fingerprint,
        tenant) pair once, so indexing the same text again adds no rows.

        ``digest``: the content's digest, when the caller has computed it (the Sealer
        does): the canonical form already accepted the content, so it is not encoded
        again.

        Returns:
            How many fingerprints were indexed (0 for text under 50 characters).

        Raises:
            ValueError: for an invalid tenant id.
            ContentError: for content outside the canonical form (see
                :mod:`kairo_guard.core.content`), nested too deep or containing itself.
            StoreError: if the fingerprints cannot be written.
        """
        validate_tenant(tenant)
        # the digest's canonical form refuses what the text walk cannot finish (a record
        # that contains itself, hostile nesting): the walk never sees it
        if digest is None:
            content_digest(content)
        count = self._index.add(tenant, content)
        self.indexed += count
        self._audit.append(
            {"event": "fingerprints.index", "tenant": self._keys.pseudonym(tenant), "count": count}
        )
        return count

    def export_filter(self, path: Path, *, fp_rate: float = 0.001) -> int:
        """Write the index as a signed Bloom filter, leaving out fingerprints that
        boilerplate discounting ignores.

        Returns:
            How many fingerprints the filter holds.
        """
        if self._stale is not None:  # a filter of a blind index would pass everything
            raise FilterError(f"not exported: {self._stale}")
        counting = self._countable()
        flt = FingerprintFilter.build(
            counting,
            count=len(counting),
            fp_rate=fp_rate,
            meta={
                "min_shared": self._index.min_shared,
                "min_fraction": self._index.min_fraction,
                "created_at": self._clock(),
                "scheme": SCHEME,
            },
        )
        flt.save(path, self._filter_key())
        self._audit.append({"event": "fingerprints.export", "count": len(counting)})
        return len(counting)

    def load_filter(self, path: Path) -> FingerprintFilter:
        """Read and verify a filter written by :meth:`export_filter`.

        Raises:
            KairoGuardError: if the file is unreadable or its signature does not verify.
        """
        return FingerprintFilter.load(path, self._filter_key())

    def _filter_key(self) -> bytes:
        # the pseudonym key id stays fixed across rotations, so filters stay valid
        return self._keys.subkey(PURPOSE_FILTER, self._keys.pseudonym_key_id)

    def _countable(self) -> list[int]:
        limit = self._index.boilerplate_tenants
        kept: list[int] = []
        current, tenants = None, 0
        for fp, _ in self._store.iter_fingerprints():
            if fp != current:
                if current is not None and tenants < limit:
                    kept.append(current)
                current, tenants = fp, 0
            tenants += 1
        if current is not None and tenants < limit:
            kept.append(current)
        return kept
