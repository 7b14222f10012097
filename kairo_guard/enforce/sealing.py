"""Making seals: the one place a restricting provenance label is created, signed and
audited.

Restricting classes (customer content, usage telemetry) are sealed on request by
ingestion and tenant code, under the HMAC key ring. Permitting classes are never sealed
here: vetting signs them with the vetting role's Ed25519 key, as shards
(:mod:`kairo_guard.enforce.vetting`). Every seal is audited with the tenant's
pseudonym; a source naming the tenant (``upload:acme``) is pseudonymized the same way.

No seal without index: customer content given to :meth:`Sealer.seal` (and
:meth:`Sealer.label_record`) is put in the fingerprint net before it is sealed, so a
copy of it cannot later be vouched for as operator data or pass a shared sink; if it
cannot be indexed, it is not sealed. :meth:`Sealer.seal_digest` has no text to index:
its caller indexes the content. :meth:`Sealer.seal_spooled` seals a body that goes,
with its seal, into the ingestion spool, whose indexer fingerprints it; checks at
shared sinks wait for that index (the watermark). Usage telemetry is not indexed: see
:class:`Sealer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from hashlib import sha256
from typing import Any, Protocol

import orjson

from kairo_guard.core.content import canonical_json, content_digest
from kairo_guard.core.keys import pseudonymize_name
from kairo_guard.core.seal import Label, SealCodec
from kairo_guard.core.types import SEAL_FIELD, AuditAppender, DataClass, TenantId

_SPOOLED_CACHE = 10_000
RetentionLookup = Callable[[TenantId | None, DataClass, str], int | None]
"""Seconds a label of (tenant, class, source) is kept, or None for no expiry."""


class ContentIndex(Protocol):
    """The fingerprint net as sealing uses it (:class:`~kairo_guard.detect.net.FingerprintNet`)."""

    def index(self, tenant: TenantId, content: object, *, digest: str | None = None) -> int:
        """Fingerprint ``content`` as ``tenant``'s customer content and return how many
        fingerprints it has, once they are committed; raise if they cannot be.
        ``digest``, when given, is the content's digest (it is not encoded again)."""
        ...


class Sealer:
    """Seals content and digests under the guard's key, with retention and audit.

    Customer content is indexed in the fingerprint net before it is sealed, the one
    place every API that seals it (``Guard.seal``, ``Guard.label_record``,
    ``RequestProvenance.seal_content``, ``kairo-guard label``) passes through. Usage
    telemetry is not: it is kept from shared sinks by its sticky label alone. The net
    is for text that may be copied into a shared corpus and relabeled; usage events are
    records about use (events, counts, model names, pseudonyms), alike across tenants,
    and they are what the telemetry aggregator turns into ``anonymized_telemetry``, so
    their fingerprints would flag the aggregator's output as a tenant's content. Text a
    tenant wrote (a prompt, a document) is customer content, whatever record carries it.

    Args:
        codec: signs labels.
        index: the fingerprint net, where sealed customer content is indexed.
        pseudonym: tenant id -> its keyed pseudonym (for the audit log).
        audit: where each sealing is recorded.
        clock: Unix-seconds clock.
        retention: the retention period of a new label (its ``expires_at``).
    """

    def __init__(
        self,
        codec: SealCodec,
        *,
        index: ContentIndex,
        pseudonym: Callable[[TenantId], str],
        audit: AuditAppender,
        clock: Callable[[], float],
        retention: RetentionLookup,
    ) -> None:
        self._codec = codec
        self._index = index
        self._pseudonym = pseudonym
        self._audit = audit
        self._clock = clock
        self._retention = retention
        # (tenant, source) -> (sealer, retention period, when to read the period again)
        self._spooled: dict[
            tuple[TenantId, str], tuple[Callable[[str, int, int | None], str], int | None, float]
        ] = {}
        # (tenant, source) -> (the second they were made for, spooled_parts)
        self._parts: dict[tuple[TenantId, str], tuple[int, tuple[bytes, bytes, bytes]]] = {}

    def seal(
        self,
        content: object,
        *,
        tenant: TenantId,
        data_class: DataClass | str = DataClass.CUSTOMER_CONTENT,
        source: str = "api",
        created_at: float | None = None,
    ) -> str:
        """Return a seal binding ``content`` to ``tenant`` as restricted data.

        Customer content is first indexed as ``tenant``'s in the fingerprint net; the
        seal is made only once that succeeded.

        Raises:
            ValueError: for a permitting class or an invalid tenant or source.
            ContentError: if the content cannot be digested.
            StoreError: if customer content cannot be indexed (nothing is sealed).
        """
        cls = _restricting(data_class)
        return self._seal(content, content_digest(content), cls, tenant, source, created_at)

    def seal_digest(
        self,
        digest: str,
        *,
        tenant: TenantId,
        data_class: DataClass | str,
        source: str = "api",
        created_at: float | None = None,
        audit: Mapping[str, Any] | None = None,
    ) -> str:
        """Seal data known only by its digest as restricted data of a class the
        fingerprint net does not hold (usage telemetry).

        Customer content is refused: a digest carries no text to index, and customer
        content sealed unindexed would let a copy of it pass the net. Content at hand
        goes through :meth:`seal`, which indexes it; a request body through the
        ingestion spool, whose indexer indexes it.

        ``audit`` adds fields to the audit entry of the sealing.

        Raises:
            ValueError: for customer content or a permitting class, an invalid tenant,
                source or digest.
        """
        cls = _restricting(data_class)
        if cls is DataClass.CUSTOMER_CONTENT:
            raise ValueError(
                "customer content is sealed with its content (seal, label_record), which "
                "indexes it in the fingerprint net; a digest alone cannot be indexed"
            )
        return self._mint(digest, cls, tenant, source, created_at=created_at, audit=audit)

    def seal_spooled(
        self,
        digest: str,
        *,
        tenant: TenantId,
        source: str,
        created_at: float | None = None,
        again: bool = False,
    ) -> str:
        """Seal a body's digest as ``tenant``'s customer content for the ingestion spool.

        Not indexed here: the caller writes the body with this seal to the spool,
        durably, before it hands the seal out (or, ``again``, the body is durable there
        already), and the spool's indexer fingerprints the body, records its provenance
        row and audits its first sealing (:mod:`kairo_guard.detect.indexer`); a sealing
        ``again`` is audited here. Any other caller uses :meth:`seal`.

        Raises:
            ValueError: an invalid tenant, source or digest.
        """
        now = self._clock() if created_at is None else created_at
        seal, period, _ = self._spooled_entry(tenant, source, now)
        created = int(now)
        sealed = seal(digest, created, created + period if period else None)
        if again:  # (a handler sealing its request's body under another source)
            self._audit_seal(self._codec.open(sealed), {"spooled": True})
        return sealed

    def _spooled_entry(
        self, tenant: TenantId, source: str, now: float
    ) -> tuple[Callable[[str, int, int | None], str], int | None, float]:
        key = (tenant, source)
        entry = self._spooled.get(key)
        if entry is None or now >= entry[2]:  # the tenant's retention, read once a second
            if len(self._spooled) >= _SPOOLED_CACHE:
                self._spooled.clear()
            cls = DataClass.CUSTOMER_CONTENT
            seal = self._codec.sealer_for(tenant=tenant, data_class=cls, source=source)
            entry = (seal, self._retention(tenant, cls, source), now + 1.0)
            self._spooled[key] = entry
        return entry

    def spooled_parts(self, *, tenant: TenantId, source: str) -> tuple[bytes, bytes, bytes]:
        """What a signer outside Python needs to make :meth:`seal_spooled`'s seal of
        any digest now: ``(head, rest, block)``, the seal being ``head + digest + rest``
        signed (:meth:`~kairo_guard.core.seal.SealCodec.seal_parts`; ``rest`` carries
        this second's creation time and the tenant's retention).

        Raises:
            ValueError: an invalid tenant or source.
        """
        now = self._clock()
        created = int(now)
        key = (tenant, source)
        made = self._parts.get(key)
        if made is not None and made[0] == created:
            return made[1]
        _, period, _ = self._spooled_entry(tenant, source, now)  # validates both
        if len(self._parts) >= _SPOOLED_CACHE:
            self._parts.clear()
        head, middle, tail, block = self._codec.seal_parts(
            tenant=tenant, data_class=DataClass.CUSTOMER_CONTENT, source=source
        )
        expires = str(created + period) if period else ""
        rest = f"{middle}{created}~{expires}{tail}"
        parts = (head.encode("ascii"), rest.encode("ascii"), block)
        self._parts[key] = (created, parts)
        return parts

    def label_record(
        self,
        record: Mapping[str, Any],
        *,
        tenant: TenantId,
        source: str = "api",
        data_class: DataClass | str = DataClass.CUSTOMER_CONTENT,
    ) -> dict[str, Any]:
        """Return a copy of a JSON record with its seal under ``_kairo``.

        The copy's keys are in canonical order with the seal last, so ``orjson.dumps``
        of it is the byte-verifiable line form (:func:`kairo_guard.core.content.sealed_line`).

        Raises:
            ValueError, ContentError, StoreError: as :meth:`seal` (customer content is
                indexed first).
        """
        encoded = canonical_json(record)
        body = orjson.loads(encoded)  # canonical JSON of ``body`` is ``encoded`` again
        cls = _restricting(data_class)
        seal = self._seal(body, sha256(encoded).hexdigest(), cls, tenant, source, None)
        return {**body, SEAL_FIELD: seal}

    def _seal(
        self,
        content: object,
        digest: str,
        cls: DataClass,
        tenant: TenantId,
        source: str,
        created_at: float | None,
    ) -> str:
        label = self._label(digest, cls, tenant, source, created_at)
        if cls is DataClass.CUSTOMER_CONTENT:
            # raises: no seal without index; the digest spares the net a second encoding
            self._index.index(tenant, content, digest=digest)
        return self._sign(label, None)

    def derive(self, content: object, source: Label) -> str:
        """Seal ``content`` made from content that carried ``source`` (a verified
        restricting label): the output of a transformation inherits the label whole
        (tenant, class, source, creation time and expiry: retention runs from the
        source, whatever the policy says today), with its own digest. Customer content
        is indexed first, as by :meth:`seal`.

        Raises:
            ValueError: ``source`` is permitting or names no tenant.
            ContentError: if the content cannot be digested.
            StoreError: if customer content cannot be indexed (nothing is sealed).
        """
        cls = _restricting(source.data_class)
        if source.tenant is None:
            raise ValueError("a derived label needs the tenant of its source")
        digest = content_digest(content)
        if cls is DataClass.CUSTOMER_CONTENT:
            self._index.index(source.tenant, content, digest=digest)
        return self._sign(source._replace(digest=digest), {"derived": True})

    def _mint(
        self,
        digest: str,
        data_class: DataClass,
        tenant: TenantId | None,
        source: str,
        *,
        created_at: float | None = None,
        audit: Mapping[str, Any] | None = None,
    ) -> str:
        """Seal a digest as a restricting class (what the callers checked).

        Raises:
            ValueError: an invalid tenant, source or digest, or a permitting class (those
                are signed as shards by vetting).
        """
        return self._sign(self._label(digest, data_class, tenant, source, created_at), audit)

    def _label(
        self,
        digest: str,
        data_class: DataClass,
        tenant: TenantId | None,
        source: str,
        created_at: float | None,
    ) -> Label:
        created = int(self._clock() if created_at is None else created_at)
        period = self._retention(tenant, data_class, source)
        return Label.create(
            tenant=tenant,
            data_class=data_class,
            source=source,
            created_at=created,
            expires_at=created + period if period else None,
            digest=digest,
        )

    def _sign(self, label: Label, audit: Mapping[str, Any] | None) -> str:
        seal = self._codec.seal(label)
        self._audit_seal(label, audit)
        return seal

    def _audit_seal(self, label: Label, audit: Mapping[str, Any] | None) -> None:
        tenant = label.tenant
        pseudonym = self._pseudonym(tenant) if tenant else None
        self._audit.append(
            {
                "event": "seal",
                "class": label.data_class.value,
                "tenant": pseudonym,
                "source": pseudonymize_name(label.source, tenant, pseudonym),
                "digest": label.digest,
                **(audit or {}),
            }
        )


def _restricting(data_class: DataClass | str) -> DataClass:
    cls = DataClass(data_class)
    if not cls.restricts:
        raise ValueError(
            f"{cls} cannot be sealed directly: it is signed, as a shard, only by the checks "
            "that justify it (the telemetry aggregator, operator-data vetting)"
        )
    return cls
