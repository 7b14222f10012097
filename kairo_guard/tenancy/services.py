"""The tenancy services wired together once, from the guard's collaborators.

:func:`tenant_services` is what the :class:`~kairo_guard.guard.Guard` calls at
construction; each service also stands alone (tests and tools may build just one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kairo_guard.audit.log import AuditLog
from kairo_guard.core.keys import KeyRing
from kairo_guard.core.policy import Policy
from kairo_guard.core.seal import SealCodec
from kairo_guard.enforce.service import SinkChecks
from kairo_guard.store.base import Store
from kairo_guard.tenancy.agreements import Agreements
from kairo_guard.tenancy.dataset_admission import DatasetAdmission
from kairo_guard.tenancy.dataset_service import DatasetService
from kairo_guard.tenancy.erasure import RECEIPT_DIR_NAME, Erasure
from kairo_guard.tenancy.export import TenantExport
from kairo_guard.tenancy.manifest import ManifestSigner
from kairo_guard.tenancy.models import ModelRegistry
from kairo_guard.tenancy.retention import Retention, RetentionPolicy


@dataclass(frozen=True)
class TenantServices:
    """What a tenant owns, one service each."""

    agreements: Agreements
    datasets: DatasetService
    admission: DatasetAdmission
    """How a verified dataset meets a sink (registered with the sink checks)."""
    models: ModelRegistry
    retention: Retention
    erasure: Erasure
    export: TenantExport


def tenant_services(
    *,
    agreements: Agreements,
    store: Store,
    keys: KeyRing,
    audit: AuditLog,
    codec: SealCodec,
    policy: Policy,
    checks: SinkChecks,
    retention: RetentionPolicy,
    clock: Callable[[], float],
    home: Path,
    max_record_bytes: int,
    index_watermark: Callable[[], None] | None = None,
) -> TenantServices:
    """Return the tenancy services over the guard's collaborators.

    Args:
        agreements: the tenants' agreements (the sink checks consult them too).
        home: the state directory (erasure receipts go under ``erasures/``).
        max_record_bytes: the longest dataset record line read.
        index_watermark: waits until the ingestion spool is indexed (erasure runs it
            first, so no body of the tenant is indexed after it).
    """
    pseudonym = keys.pseudonym
    signer = ManifestSigner(keys, policy, clock)
    datasets = DatasetService(
        store=store,
        audit=audit,
        pseudonym=pseudonym,
        codec=codec,
        signer=signer,
        agreements=agreements,
        checks=checks,
        max_record_bytes=max_record_bytes,
    )
    models = ModelRegistry(
        store=store,
        audit=audit,
        pseudonym=pseudonym,
        clock=clock,
        signer=signer,
        agreements=agreements,
        resolve_sink=checks.resolve,
    )
    return TenantServices(
        agreements=agreements,
        datasets=datasets,
        admission=DatasetAdmission(store, signer, agreements, checks),
        models=models,
        retention=Retention(
            retention,
            store=store,
            audit=audit,
            pseudonym=pseudonym,
            clock=clock,
            codec=codec,
            datasets=datasets,
        ),
        erasure=Erasure(
            store=store,
            keys=keys,
            audit=audit,
            clock=clock,
            datasets=datasets,
            models=models,
            receipts=home / RECEIPT_DIR_NAME,
            index_watermark=index_watermark,
        ),
        export=TenantExport(
            store=store,
            models=models,
            pseudonym=pseudonym,
            audit=audit,
            clock=clock,
        ),
    )
