"""Fine-tune agreements: granting, revoking and asking whether one is active.

A tenant's content reaches its own fine-tune sink only while the tenant holds an
active agreement whose scope includes ``fine-tune`` (invariant I2). Every grant and
revocation is audited with the tenant's pseudonym.

Granting is idempotent by ``reference`` (the contract's own name, e.g.
``DPA-2026-001``): while an agreement of the tenant with that reference is active,
granting it again with the same scope words and expiry returns that agreement, and
nothing new is recorded or audited. Granting an active reference with another scope
or expiry raises :class:`ValueError`: the terms of a signed agreement do not change
silently; revoke it, or grant the new terms under a new reference. A revoked or
expired reference may be granted again (a new agreement). An empty reference is
never matched: each such grant is a new agreement.

``expires_at`` is Unix seconds (int or float) or an aware :class:`~datetime.datetime`;
a naive datetime is refused (its zone would be a guess), as is an expiry not after now
or past the end of year 9999 (no date could show it).
``valid_for`` (seconds, instead of ``expires_at``) is a term relative to the grant, as
in a contract "for 365 days": granting an active reference again ``valid_for`` the same
seconds repeats it when the existing agreement ends that long after its own grant, so
re-running ``agreements grant T --reference R --for 365d`` is idempotent (a command
whose computed expiry moved with the clock would be refused as other terms).
:meth:`Agreements.grant_once` also says whether the agreement is new.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

from kairo_guard.core.exceptions import StoreError
from kairo_guard.core.types import AuditAppender, TenantId, validate_tenant
from kairo_guard.store.base import DEFAULT_SCOPE, Agreement, Store

Expiry = datetime | float | int | None
"""What ``expires_at`` accepts: an aware datetime, Unix seconds, or None (no expiry)."""

LAST_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
"""The latest expiry a grant accepts: one a calendar date can still show."""


def expiry_seconds(expires_at: object, now: float) -> float | None:
    """Return ``expires_at`` as Unix seconds (None stays None).

    Raises:
        ValueError: naming ``expires_at``, for a naive datetime, a value that is not
            a datetime or a finite number, or a time not after ``now``.
    """
    if expires_at is None:
        return None
    if isinstance(expires_at, datetime):
        if expires_at.tzinfo is None or expires_at.utcoffset() is None:
            raise ValueError(
                "expires_at is a naive datetime: give it a zone "
                "(datetime(..., tzinfo=datetime.UTC)) or pass Unix seconds"
            )
        seconds = expires_at.timestamp()
    elif isinstance(expires_at, int | float) and not isinstance(expires_at, bool):
        seconds = float(expires_at)
    else:
        raise ValueError(
            f"expires_at must be an aware datetime or Unix seconds (int or float), "
            f"not {type(expires_at).__name__}"
        )
    if not math.isfinite(seconds):
        raise ValueError("expires_at must be a finite time")
    if seconds <= now:
        raise ValueError(
            f"expires_at ({seconds:.0f}) is not after now ({now:.0f}): "
            "an agreement must expire after it is granted"
        )
    return seconds


def duration_seconds(valid_for: object) -> float:
    """Return ``valid_for`` as a positive, finite number of seconds.

    Raises:
        ValueError: naming ``valid_for``, for anything else.
    """
    if isinstance(valid_for, int | float) and not isinstance(valid_for, bool):
        seconds = float(valid_for)
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    raise ValueError(f"valid_for must be a positive, finite number of seconds, not {valid_for!r}")


class Agreements:
    """The tenants' fine-tune agreements (see the module docstring).

    Args:
        store: where agreements are kept.
        audit: where grants and revocations are recorded.
        pseudonym: tenant id -> keyed pseudonym (the audit log holds no raw ids).
        clock: Unix-seconds clock.
    """

    def __init__(
        self,
        store: Store,
        audit: AuditAppender,
        pseudonym: Callable[[TenantId], str],
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._audit = audit
        self._pseudonym = pseudonym
        self._clock = clock

    def active(self, tenant: TenantId, now: float | None = None) -> bool:
        """True if ``tenant`` holds an agreement permitting a fine-tune at ``now``
        (default: the clock); False when the store cannot say (fail closed)."""
        return self.for_fine_tune(tenant, now=now) is not None

    def for_fine_tune(
        self, tenant: TenantId, agreement_id: str | None = None, *, now: float | None = None
    ) -> Agreement | None:
        """Return the tenant's newest agreement that permits fine-tuning now (or that
        one, by id); None when there is none or the store cannot say (fail closed)."""
        when = self._clock() if now is None else now
        try:
            agreements = self._store.list_agreements(tenant)
        except StoreError:
            return None
        for agreement in reversed(agreements):
            if agreement_id in (None, agreement.id) and agreement.permits_fine_tune(when):
                return agreement
        return None

    def grant(
        self,
        tenant: TenantId,
        *,
        expires_at: Expiry = None,
        reference: str = "",
        scope: str = DEFAULT_SCOPE,
        valid_for: float | None = None,
    ) -> Agreement:
        """Record an agreement for ``tenant`` (audited when new) and return it; see
        :meth:`grant_once`."""
        return self.grant_once(
            tenant, expires_at=expires_at, reference=reference, scope=scope, valid_for=valid_for
        )[0]

    def grant_once(
        self,
        tenant: TenantId,
        *,
        expires_at: Expiry = None,
        reference: str = "",
        scope: str = DEFAULT_SCOPE,
        valid_for: float | None = None,
    ) -> tuple[Agreement, bool]:
        """Record an agreement for ``tenant`` (audited when new); return it and whether
        it is new (False: the active agreement under ``reference`` with these terms).

        Raises:
            ValueError: an invalid tenant, scope, ``expires_at`` or ``valid_for``, both
                of those, or an active agreement under the same reference with other
                terms.
            StoreError: the store cannot record it.
        """
        validate_tenant(tenant)
        now = self._clock()
        expiry = expiry_seconds(expires_at, now)
        if valid_for is not None:
            if expiry is not None:
                raise ValueError("give expires_at or valid_for, not both")
            valid_for = duration_seconds(valid_for)
        until = now + valid_for if valid_for is not None else expiry
        if until is not None and until > LAST_EXPIRY:
            raise ValueError("an agreement must expire by the end of year 9999")
        agreement, created = self._store.grant_agreement(
            tenant,
            now=now,
            expires_at=expiry,
            reference=reference,
            scope=scope,
            valid_for=valid_for,
        )
        if created:
            self._audit.append(
                {
                    "event": "agreement.grant",
                    "agreement": agreement.id,
                    "tenant": self._pseudonym(tenant),
                    "scope": scope,
                    "expires_at": agreement.expires_at,
                }
            )
        return agreement, created

    def revoke(self, tenant: TenantId, agreement_id: str | None = None) -> int:
        """Revoke one or all of the tenant's agreements (audited); return how many."""
        count = self._store.revoke_agreements(tenant, now=self._clock(), agreement_id=agreement_id)
        self._audit.append(
            {
                "event": "agreement.revoke",
                "agreement": agreement_id,
                "tenant": self._pseudonym(tenant),
                "revoked": count,
            }
        )
        return count

    def list_agreements(self, tenant: TenantId | None = None) -> list[Agreement]:
        """Return agreements, oldest first, optionally one tenant's."""
        return self._store.list_agreements(tenant)
