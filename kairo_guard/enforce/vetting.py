"""Vetting operator data (public, licensed, synthetic) before it may be sealed as such.

Operator data earns its permitting ``operator_public`` label only if it passes the PII
gate (when on) and overlaps no tenant's indexed content (the fingerprint net). A
refusal is audited with the matching tenant's pseudonym and raised; nothing is sealed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from kairo_guard.core.content import content_digest
from kairo_guard.core.exceptions import ContentRefused
from kairo_guard.core.policy import Decision
from kairo_guard.core.types import AuditAppender, DataClass, TenantId
from kairo_guard.detect.fields import require_readable
from kairo_guard.detect.fingerprint import FingerprintIndex
from kairo_guard.enforce.check import FINGERPRINT_RULE
from kairo_guard.enforce.sealing import Sealer


class PiiRefusal(Protocol):
    """The PII gate as vetting uses it."""

    def refuse_if_pii(self, content: object) -> None:
        """Raise :class:`ContentRefused` if ``content`` holds PII (or cannot be judged)."""
        ...


class AllRefusals:
    """Several refusals as one: each runs in order, the first that refuses decides;
    None among them is skipped (a check that is off)."""

    def __init__(self, *checks: PiiRefusal | None) -> None:
        self._checks = [c for c in checks if c is not None]

    def refuse_if_pii(self, content: object) -> None:
        """Raise :class:`ContentRefused` as the first check that refuses does."""
        for check in self._checks:
            check.refuse_if_pii(content)


class OperatorVetting:
    """Seals operator data that passes the PII gate and the fingerprint net.

    Args:
        sealer: mints the ``operator_public`` seal.
        fingerprints: the index of every tenant's ingested content.
        pii: the PII gate, or None when it is off.
        audit: where refusals are recorded.
        pseudonym: tenant id -> keyed pseudonym.
        stale_index: the block to raise for everything while the fingerprint index
            cannot be trusted (built under another scheme), or None.
        index_watermark: called before each vetting: returns once everything ingestion
            accepted before it is indexed, or raises
            :class:`~kairo_guard.core.exceptions.IndexLagging` (None: nothing to wait for).
    """

    def __init__(
        self,
        sealer: Sealer,
        fingerprints: FingerprintIndex,
        pii: PiiRefusal | None,
        *,
        audit: AuditAppender,
        pseudonym: Callable[[TenantId], str],
        stale_index: Decision | None = None,
        index_watermark: Callable[[], None] | None = None,
    ) -> None:
        self._stale_index = stale_index
        self._index_watermark = index_watermark
        self._sealer = sealer
        self._fingerprints = fingerprints
        self._pii = pii
        self._audit = audit
        self._pseudonym = pseudonym

    def seal(self, content: object, *, source: str) -> str:
        """Vouch for ``content`` as operator data and return its seal.

        Raises:
            ContentRefused: PII found (rule ``pii.*``) or a tenant's text (rule
                ``fingerprint.tenant-content``).
            IndexLagging: the index is behind ingestion past its bound (a
                ``ContentRefused``, rule ``index.lagging``): nothing is vouched for.
            ContentError: if it cannot be digested, or read in full (bytes that are
                not UTF-8 text).
        """
        if self._stale_index is not None:  # the net is blind: vouch for nothing
            raise ContentRefused(self._stale_index.rule, self._stale_index.reason)
        if self._index_watermark is not None:
            self._index_watermark()  # what was ingested before now must be in the net
        digest = content_digest(content)
        require_readable(content)
        if self._pii is not None:
            self._pii.refuse_if_pii(content)
        found = self._fingerprints.overlap(content)
        if found is not None:
            pseudonym = self._pseudonym(found.tenant)
            self._audit.append(
                {
                    "event": "seal.refused",
                    "class": DataClass.OPERATOR_PUBLIC.value,
                    "rule": FINGERPRINT_RULE,
                    "tenant": pseudonym,
                    "digest": digest,
                    "shared": found.shared,
                    "total": found.total,
                }
            )
            raise ContentRefused(FINGERPRINT_RULE, found.reason(), tenant=pseudonym)
        return self._sealer.mint(digest, DataClass.OPERATOR_PUBLIC, None, source)
