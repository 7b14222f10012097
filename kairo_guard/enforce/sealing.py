"""Making seals: the one place a provenance label is created, signed and audited.

Restricting classes (customer content, usage telemetry) are sealed on request by
ingestion and tenant code. Permitting classes are minted only through :meth:`Sealer.mint`
by the code that justifies them (the telemetry aggregator, operator-data vetting).
Every seal is audited with the tenant's pseudonym; a source naming the tenant
(``upload:acme``) is pseudonymized the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from kairo_guard.core.content import canonical_json, content_digest
from kairo_guard.core.keys import pseudonymize_name
from kairo_guard.core.seal import Label, SealCodec
from kairo_guard.core.types import SEAL_FIELD, AuditAppender, DataClass, TenantId

RetentionLookup = Callable[[TenantId | None, DataClass, str], int | None]
"""Seconds a label of (tenant, class, source) is kept, or None for no expiry."""


class Sealer:
    """Seals content and digests under the guard's key, with retention and audit.

    Args:
        codec: signs labels.
        pseudonym: tenant id -> its keyed pseudonym (for the audit log).
        audit: where each sealing is recorded.
        clock: Unix-seconds clock.
        retention: the retention period of a new label (its ``expires_at``).
    """

    def __init__(
        self,
        codec: SealCodec,
        *,
        pseudonym: Callable[[TenantId], str],
        audit: AuditAppender,
        clock: Callable[[], float],
        retention: RetentionLookup,
    ) -> None:
        self._codec = codec
        self._pseudonym = pseudonym
        self._audit = audit
        self._clock = clock
        self._retention = retention

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

        Raises:
            ValueError: for a permitting class or an invalid tenant or source.
            ContentError: if the content cannot be digested.
        """
        cls = _restricting(data_class)
        digest = content_digest(content)
        return self.mint(digest, cls, tenant, source, created_at=created_at)

    def seal_digest(
        self,
        digest: str,
        *,
        tenant: TenantId,
        data_class: DataClass | str = DataClass.CUSTOMER_CONTENT,
        source: str = "api",
        created_at: float | None = None,
        audit: Mapping[str, Any] | None = None,
    ) -> str:
        """Seal content known only by its digest (a streamed body) as restricted data.

        ``audit`` adds fields to the audit entry of the sealing.

        Raises:
            ValueError: for a permitting class, an invalid tenant, source or digest.
        """
        cls = _restricting(data_class)
        return self.mint(digest, cls, tenant, source, created_at=created_at, audit=audit)

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
            ValueError, ContentError: as :meth:`seal`.
        """
        body = orjson.loads(canonical_json(record))
        seal = self.seal(body, tenant=tenant, data_class=data_class, source=source)
        return {**body, SEAL_FIELD: seal}

    def mint(
        self,
        digest: str,
        data_class: DataClass,
        tenant: TenantId | None,
        source: str,
        *,
        created_at: float | None = None,
        audit: Mapping[str, Any] | None = None,
    ) -> str:
        """Seal a digest as any class. The caller has checked that the class is earned.

        Raises:
            ValueError: an invalid tenant, source or digest.
        """
        created = int(self._clock() if created_at is None else created_at)
        period = self._retention(tenant, data_class, source)
        label = Label.create(
            tenant=tenant,
            data_class=data_class,
            source=source,
            created_at=created,
            expires_at=created + period if period else None,
            digest=digest,
        )
        seal = self._codec.seal(label)
        pseudonym = self._pseudonym(tenant) if tenant else None
        self._audit.append(
            {
                "event": "seal",
                "class": data_class.value,
                "tenant": pseudonym,
                "source": pseudonymize_name(source, tenant, pseudonym),
                "digest": digest,
                **(audit or {}),
            }
        )
        return seal


def _restricting(data_class: DataClass | str) -> DataClass:
    cls = DataClass(data_class)
    if not cls.restricts:
        raise ValueError(
            f"{cls} cannot be sealed directly: it is minted only by the checks that "
            "justify it (the telemetry aggregator, the operator-data label command)"
        )
    return cls
