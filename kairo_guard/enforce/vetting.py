"""Vetting: the one way records earn a permitting label, in signed shards.

Operator data (public, licensed, synthetic) and the telemetry aggregator's output are
vetted in batches by :class:`ShardVetting`: each record must be readable in full, pass
the PII policy of its class, and overlap no tenant's indexed content, alone or with the
rest of its batch (evidence accumulates over the batch as it does over a sink check).
The records that pass become one shard (:mod:`kairo_guard.enforce.shards`), signed with
the vetting role's Ed25519 key, with the fingerprint index position they were vetted
at; each gets the seal ``kp1.<shard>.<digest>``. A refusal is audited (with the
matching tenant's pseudonym, never content) and returned in the record's place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from kairo_guard.core.content import content_digest
from kairo_guard.core.exceptions import ContentError, ContentRefused, KeyringError
from kairo_guard.core.policy import Decision
from kairo_guard.core.types import AuditAppender, DataClass, TenantId
from kairo_guard.detect.accumulation import CheckNet
from kairo_guard.detect.fields import require_readable
from kairo_guard.detect.fingerprint import FingerprintIndex
from kairo_guard.detect.identifiers import CustomerIdentifiers
from kairo_guard.enforce.shards import NO_SIGNER, ShardWriter
from kairo_guard.store.base import ShardStore

Vetted = str | ContentRefused | ContentError
"""A record's outcome: its seal, or why it was refused."""


class PiiRefusal(Protocol):
    """The PII policy of a class as vetting uses it: the gate, the identifier index."""

    def refusals(self, contents: Sequence[object]) -> list[ContentRefused | None]:
        """Per record, its refusal (PII, or content that cannot be judged) or None."""
        ...


class AllRefusals:
    """Several refusals as one: each runs in order on the records none refused yet,
    the first that refuses a record decides; None among them is skipped (a check that
    is off)."""

    def __init__(self, *checks: PiiRefusal | None) -> None:
        self._checks = [c for c in checks if c is not None]

    def refusals(self, contents: Sequence[object]) -> list[ContentRefused | None]:
        """Per record, the first check's refusal of it, or None."""
        out: list[ContentRefused | None] = [None] * len(contents)
        for check in self._checks:
            open_ = [i for i, r in enumerate(out) if r is None]
            for i, refusal in zip(open_, check.refusals([contents[i] for i in open_]), strict=True):
                out[i] = refusal
        return out


class ShardVetting:
    """Vets batches of one permitting class and seals what passes as a shard.

    Args:
        data_class: the class it vouches for (operator data or anonymized telemetry).
        writer: signs and keeps shards (fails without a signing key).
        fingerprints: the index of every tenant's ingested content.
        pii: the class's PII policy (with the customer identifier index for operator
            data), or None when it is off.
        policy: the version of that policy and the net's settings (in each manifest).
        store: the index position a shard is vetted at.
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
        data_class: DataClass,
        writer: ShardWriter,
        fingerprints: FingerprintIndex,
        pii: PiiRefusal | None,
        *,
        policy: str,
        store: ShardStore,
        audit: AuditAppender,
        pseudonym: Callable[[TenantId], str],
        stale_index: Decision | None = None,
        index_watermark: Callable[[], None] | None = None,
    ) -> None:
        self.data_class = data_class
        self.policy = policy
        self.writer = writer
        """Signs shards (the vetting role's key): what vetting uses once records passed."""
        self._fingerprints = fingerprints
        self._identifiers: CustomerIdentifiers | None = fingerprints.identifiers
        self._pii = pii
        self._store = store
        self._audit = audit
        self._pseudonym = pseudonym
        self._stale_index = stale_index
        self._index_watermark = index_watermark

    def seal(self, content: object, *, source: str) -> str:
        """Vet one record (a shard of one) and return its seal.

        Raises:
            ContentRefused: PII found (rule ``pii.*``), a tenant's text (rule
                ``fingerprint.tenant-content``), a lagging index (``index.lagging``).
            ContentError: if it cannot be digested, or read in full.
            KeyringError: this process holds no signing key.
        """
        outcome = self.vet([content], source=source)[0]
        if not isinstance(outcome, str):
            raise outcome
        return outcome

    def vet(self, contents: Sequence[object], *, source: str) -> list[Vetted]:
        """Vet a batch; return, per record in order, its ``kp1`` seal or its refusal.

        Raises:
            KeyringError: this process holds no signing key (nothing is vetted).
            ContentRefused: for the whole batch, while the index is stale or lags past
                its bound (rule ``fingerprint.scheme-mismatch`` / ``index.lagging``).
            StoreError: the index or the store cannot be read or written.
        """
        if self._identifiers is None:
            return self._vet(contents, source)
        with self._identifiers.remembering():  # the check and the shard's table read once
            return self._vet(contents, source)

    def _vet(self, contents: Sequence[object], source: str) -> list[Vetted]:
        if not self.writer.can_sign:
            raise KeyringError(NO_SIGNER)
        if self._stale_index is not None:  # the net is blind: vouch for nothing
            raise ContentRefused(self._stale_index.rule, self._stale_index.reason)
        if self._index_watermark is not None:
            self._index_watermark()  # what was ingested before now must be in the net
        # read before any lookup: whatever is indexed later lies past it, and a sink
        # compares the shard with exactly that
        watermark = self._store.fingerprint_position()
        outcomes: list[Vetted | None] = [None] * len(contents)
        digests: list[str] = [""] * len(contents)
        for i, content in enumerate(contents):
            try:
                digests[i] = content_digest(content)
                require_readable(content)
            except ContentError as exc:
                outcomes[i] = exc
        readable = [i for i, o in enumerate(outcomes) if o is None]
        if self._pii is not None:  # one batch of the gate for the shard
            found = self._pii.refusals([contents[i] for i in readable])
            for i, refusal in zip(readable, found, strict=True):
                outcomes[i] = refusal
        fingerprints: dict[int, np.ndarray[Any, Any]] = {}
        for i in (i for i, o in enumerate(outcomes) if o is None):
            try:  # once: for the net, and kept for the shard's table
                fingerprints[i] = self._fingerprints.fingerprints_of(contents[i])
            except ContentError as exc:
                outcomes[i] = exc
        passing = list(fingerprints)
        verdicts = CheckNet(self._fingerprints).decide(
            [contents[i] for i in passing], [True] * len(passing), list(fingerprints.values())
        )
        kept: list[int] = []
        for i, verdict in zip(passing, verdicts, strict=True):
            if verdict is None:
                kept.append(i)
            elif isinstance(verdict, Decision):
                outcomes[i] = self._refused(verdict, digests[i])
            elif isinstance(verdict, ContentRefused | ContentError):
                outcomes[i] = verdict
            else:
                raise verdict  # the index cannot be read: nothing is vouched for
        if kept:
            seals = self.writer.write(
                self.data_class,
                source,
                [digests[i] for i in kept],
                [self._with_identifiers(contents[i], fingerprints[i]) for i in kept],
                watermark=watermark,
                policy=self.policy,
            )
            for i, seal in zip(kept, seals, strict=True):
                outcomes[i] = seal
        return [o for o in outcomes if o is not None]  # every record has its outcome now

    def _with_identifiers(self, content: object, fps: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self._identifiers is not None:
            found = self._identifiers.of_record(content)
            if found:
                fps = np.union1d(fps, np.fromiter(found, dtype=np.int64, count=len(found)))
        return fps

    def _refused(self, verdict: Decision, digest: str) -> ContentRefused:
        pseudonym = self._pseudonym(verdict.owner) if verdict.owner else None
        self._audit.append(
            {
                "event": "seal.refused",
                "class": self.data_class.value,
                "rule": verdict.rule,
                "tenant": pseudonym,
                "digest": digest,
            }
        )
        return ContentRefused(verdict.rule, verdict.reason, tenant=pseudonym)
