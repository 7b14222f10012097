"""Retention: how long sealed content may be used, and the sweep that deletes what ran out.

A label's ``expires_at`` is set when it is sealed, from the effective retention of its
tenant, class and source, most specific first:

1. the tenant's own period for agent run logs (``retention set --tenant T --class agent_run``),
2. the tenant's own period for the label's class,
3. the configured period for agent run logs (``[retention] agent_run``, default 90 days),
4. the configured period for the class (``[retention] customer_content = "..."``),
5. none: no expiry.

An **agent run log** is a label whose source is ``agent-run`` or starts with
``agent-run:`` (e.g. ``agent-run:summarize``). Tenant periods live in the store, so they
change at run time (seen by every guard within :data:`REFRESH_SECONDS`); they apply to
content sealed after the change, since seals carry their expiry. Sinks refuse expired
labels (rule ``retention.expired``); :meth:`Retention.sweep` deletes expired dataset records and
provenance rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kairo_guard.core.seal import Label, SealCodec
from kairo_guard.core.types import AuditAppender, DataClass, TenantId, validate_tenant
from kairo_guard.store.base import ProvenanceRow, Store
from kairo_guard.tenancy.dataset_service import DatasetService

AGENT_RUN = "agent_run"
"""The retention scope of agent run logs (beside the data class names)."""
AGENT_RUN_SOURCE = "agent-run"
"""Labels whose source is this, or starts with it and a colon, are agent run logs."""
DEFAULT_AGENT_RUN_RETENTION = 90 * 86400
"""The privacy policy's default for agent run logs: 90 days."""
REFRESH_SECONDS = 5.0
"""Longest time a guard keeps using tenant periods read from the store."""
TENANT_SCOPES = frozenset({AGENT_RUN, *(c.value for c in DataClass if c.tenant_bound)})
"""What a tenant may set a period for."""


def is_agent_run(source: str) -> bool:
    """True if a label with this source is an agent run log."""
    return source == AGENT_RUN_SOURCE or source.startswith(AGENT_RUN_SOURCE + ":")


class RetentionPolicy:
    """Answers "until when may this be kept?" from the config and the tenants' periods.

    Args:
        store: holds the tenants' periods.
        classes: configured period per data class, in seconds.
        agent_run: configured period for agent run logs, in seconds.
        monotonic: clock for the refresh of tenant periods.
    """

    def __init__(
        self,
        store: Store,
        classes: Mapping[DataClass, int],
        agent_run: int = DEFAULT_AGENT_RUN_RETENTION,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.classes = dict(classes)
        self.agent_run = agent_run
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._tenants: dict[TenantId, dict[str, int]] = {}
        self._loaded_at: float | None = None

    def _tenant_periods(self, tenant: TenantId) -> Mapping[str, int]:
        now = self._monotonic()
        with self._lock:
            if self._loaded_at is None or now - self._loaded_at > REFRESH_SECONDS:
                self._tenants = self._store.list_retention()  # StoreError: sealing fails
                self._loaded_at = now
            return self._tenants.get(tenant, {})

    def seconds(self, tenant: TenantId | None, cls: DataClass, source: str) -> int | None:
        """Return the retention of a label, in seconds, or None for no expiry.

        Raises:
            StoreError: if the tenants' periods cannot be read (no seal without them).
        """
        agent = is_agent_run(source)
        if tenant is not None and cls.tenant_bound:
            own = self._tenant_periods(tenant)
            found = (own.get(AGENT_RUN) if agent else None) or own.get(cls.value)
            if found:
                return found
        if agent and cls.tenant_bound:
            return self.agent_run
        return self.classes.get(cls)

    def set(self, tenant: TenantId, scope: str, seconds: int | None) -> None:
        """Set (None: remove) ``tenant``'s period for a class or ``agent_run``.

        Raises:
            ValueError: for an invalid tenant, an unknown scope or a non-positive period.
        """
        validate_tenant(tenant)
        if scope not in TENANT_SCOPES:
            raise ValueError(f"unknown retention class {scope!r}: use {sorted(TENANT_SCOPES)}")
        if seconds is not None and seconds <= 0:
            raise ValueError("a retention period must be positive")
        self._store.set_retention(tenant, scope, seconds)
        with self._lock:
            self._loaded_at = None

    def tenant_periods(self) -> dict[TenantId, dict[str, int]]:
        """Return every tenant's own periods (tenant -> scope -> seconds), fresh."""
        return self._store.list_retention()


@dataclass
class SweepReport:
    """What a retention sweep removed (or, in a dry run, would remove)."""

    now: float
    dry_run: bool
    removed: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    """What -> tenant pseudonym (``-`` for none) -> class -> count; what is
    ``dataset_records`` or ``provenance``."""
    datasets: dict[str, dict[str, int]] = field(default_factory=dict)
    """Dataset id -> ``kept``/``removed`` for datasets that had expired records."""

    def count(self, what: str, pseudonym: str | None, cls: str, n: int = 1) -> None:
        """Add ``n`` removed items."""
        per_class = self.removed.setdefault(what, {}).setdefault(pseudonym or "-", {})
        per_class[cls] = per_class.get(cls, 0) + n

    def total(self, what: str) -> int:
        """Return how many items of one kind were removed."""
        return sum(n for c in self.removed.get(what, {}).values() for n in c.values())

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data (no raw tenant id in it)."""
        return {
            "now": self.now,
            "dry_run": self.dry_run,
            "removed": self.removed,
            "totals": {what: self.total(what) for what in sorted(self.removed)},
            "datasets": self.datasets,
        }


class Retention:
    """Tenants' own periods (audited), provenance rows, and the sweep.

    Args:
        policy: the periods (config and tenants').
        store: holds provenance rows.
        audit: where changes and sweeps are recorded.
        pseudonym: tenant id -> keyed pseudonym.
        clock: Unix-seconds clock.
        codec: opens seals.
        datasets: lists, opens and prunes tenant datasets.
    """

    def __init__(
        self,
        policy: RetentionPolicy,
        *,
        store: Store,
        audit: AuditAppender,
        pseudonym: Callable[[TenantId], str],
        clock: Callable[[], float],
        codec: SealCodec,
        datasets: DatasetService,
    ) -> None:
        self.policy = policy
        self._store = store
        self._audit = audit
        self._pseudonym = pseudonym
        self._clock = clock
        self._codec = codec
        self._datasets = datasets

    def set_period(self, tenant: TenantId, scope: str, seconds: int | None) -> None:
        """Set (None: remove) ``tenant``'s own period for a data class or ``agent_run``,
        audited; it applies to content sealed from now on.

        Raises:
            ValueError: for an invalid tenant, class or period.
        """
        self.policy.set(tenant, scope, seconds)
        self._audit.append(
            {
                "event": "retention.set",
                "tenant": self._pseudonym(tenant),
                "class": scope,
                "seconds": seconds,
            }
        )

    def record_provenance(self, seal: str) -> None:
        """Record a provenance row (digest and label, no content) for a tenant's seal.

        Raises:
            SealError: if the seal does not verify; ValueError: if it names no tenant.
        """
        label = self._codec.open(seal)
        if label.tenant is None:
            raise ValueError("only a tenant's seals have provenance rows")
        self._store.add_provenance([ProvenanceRow.of_label(label, label.tenant)])

    def sweep(self, *, dry_run: bool = False) -> SweepReport:
        """Delete expired dataset records and provenance rows; audit and return what went.

        Each dataset is read (and verified) first; only one with expired records is
        pruned, which rewrites it and re-signs its manifest. A dry run only reads.

        Raises:
            StoreError, DatasetError, OSError: the sweep stops at the first failure (it
                can be run again: what it already removed stays removed).
        """
        now = self._clock()
        report = SweepReport(now=now, dry_run=dry_run)
        for info in self._datasets.list_datasets():
            expired, kept = self._expired_records(info.path, now)
            if not expired:
                continue
            removed = len(expired)
            if not dry_run:
                kept, removed = self._datasets.prune(
                    info.id, lambda label: not label.expired(now), reason="retention"
                )
                if removed > len(expired):  # records without a readable label go too
                    report.count("dataset_records", None, "unreadable", removed - len(expired))
            for label in expired:
                owner = self._pseudonym(label.tenant) if label.tenant else None
                report.count("dataset_records", owner, label.data_class.value)
            report.datasets[info.id] = {"kept": kept, "removed": removed}
        for (tenant, cls), n in self._store.sweep_provenance(now, dry_run=dry_run).items():
            report.count("provenance", self._pseudonym(tenant), cls, n)
        self._audit.append({"event": "retention.sweep", **report.to_json()})
        return report

    def _expired_records(self, path: Path, now: float) -> tuple[list[Label], int]:
        """Return the labels of a dataset's expired records and how many records stay."""
        expired: list[Label] = []
        kept = 0
        for _, _, _, seal in self._datasets.open(path).verified_lines():
            label = self._codec.open(seal) if seal is not None else None
            if label is not None and label.expired(now):
                expired.append(label)
            else:
                kept += 1
        return expired, kept
