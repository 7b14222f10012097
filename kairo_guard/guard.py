"""The :class:`Guard` facade: configured once, used by training code, middleware and CLI.

It wires the layers together and delegates; it decides nothing itself. Sealing is
:class:`~kairo_guard.enforce.sealing.Sealer`, operator vetting
:class:`~kairo_guard.enforce.vetting.OperatorVetting`, sink checks
:class:`~kairo_guard.enforce.service.SinkChecks`, the fingerprint net
:class:`~kairo_guard.detect.net.FingerprintNet`, and what a tenant owns lives in
:mod:`kairo_guard.tenancy`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from kairo_guard import assembly
from kairo_guard.assembly import AUDIT_DIR_NAME
from kairo_guard.config import Settings, load_settings
from kairo_guard.core import context
from kairo_guard.core.keys import KeyRing
from kairo_guard.core.policy import Policy
from kairo_guard.core.report import CheckReport
from kairo_guard.core.seal import Label, SealCodec
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import DataClass, Mode, SinkKind, TenantId
from kairo_guard.detect.bloom import FingerprintFilter
from kairo_guard.detect.net import FingerprintNet
from kairo_guard.enforce.check import CheckContext, SinkCheck, fingerprint_check
from kairo_guard.enforce.decorators import guard_sink
from kairo_guard.enforce.sealing import Sealer
from kairo_guard.enforce.service import ReportCallback, SinkChecks
from kairo_guard.enforce.vetting import OperatorVetting
from kairo_guard.otel.instrumentation import GuardTelemetry
from kairo_guard.store.base import (
    DEFAULT_SCOPE,
    Agreement,
    DatasetInfo,
    ModelInfo,
    Store,
)
from kairo_guard.tenancy.agreements import Expiry
from kairo_guard.tenancy.dataset_builder import DatasetBuilder
from kairo_guard.tenancy.datasets import VerifiedDataset
from kairo_guard.tenancy.erasure import ErasureReceipt
from kairo_guard.tenancy.manifest import Manifest
from kairo_guard.tenancy.retention import RetentionPolicy, SweepReport
from kairo_guard.tenancy.services import tenant_services

__all__ = ["AUDIT_DIR_NAME", "Guard"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Guard:
    """Keeps customer content out of shared training: seals, sink checks, audit.

    Args:
        home: state directory (else ``KAIRO_GUARD_HOME``, the config file, ``./.kairo-guard``).
        key: a :class:`KeyRing` or a ``KAIRO_GUARD_KEY``-style string (else the
            environment, else the key file in ``home``).
        config_file: a ``kairo-guard.toml`` (else ``KAIRO_GUARD_CONFIG``, else
            ``./kairo-guard.toml`` if present).
        default_mode: mode of sinks that name none (else ``KAIRO_GUARD_MODE``, config,
            ``enforce``).
        store: a state store (default: SQLite in ``home``).
        clock: Unix-seconds clock, injectable for tests of expiry.
        env: environment mapping to read instead of ``os.environ``.
        pii_gate: run the PII gate before shared sinks (else ``[pii] enabled``, on).
        tracer_provider: OpenTelemetry tracer provider for decision spans (default:
            the global one, looked up on first use).
        meter_provider: OpenTelemetry meter provider for decision metrics (default:
            the global one).

    Raises:
        ConfigError: bad configuration.
        KeyringError: no usable key ("no key, no guard").
        StoreError: the state store cannot be opened.
    """

    def __init__(
        self,
        *,
        home: Path | str | None = None,
        key: KeyRing | str | None = None,
        config_file: Path | str | None = None,
        default_mode: Mode | str | None = None,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        env: Mapping[str, str] | None = None,
        pii_gate: bool | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        self.telemetry = GuardTelemetry(tracer_provider, meter_provider)
        self.settings: Settings = load_settings(
            home=home, config_file=config_file, default_mode=default_mode, env=env
        )
        self.keys = assembly.key_ring(key, self.settings.home, env)
        self._clock = clock
        self.codec = SealCodec(self.keys)
        self.policy = Policy(extra_rules=self.settings.rules)
        self.store: Store = store if store is not None else assembly.open_store(self.settings)
        try:
            self.audit = assembly.open_audit(self.settings, self.keys)
        except BaseException:
            if store is None:
                self.store.close()  # ours to close: no audit log, no guard
            raise
        self.fingerprints = assembly.fingerprint_index(self.settings, self.store, self.keys)
        self.pii = assembly.pii_check(self.settings, pii_gate)
        self.net = FingerprintNet(self.fingerprints, self.store, self.keys, self.audit, clock)
        self.retention = RetentionPolicy(
            self.store, self.settings.retention, self.settings.agent_run_retention
        )
        self.sealer = Sealer(
            self.codec,
            pseudonym=self.keys.pseudonym,
            audit=self.audit,
            clock=clock,
            retention=self.retention.seconds,
        )
        self.vetting = OperatorVetting(
            self.sealer,
            self.fingerprints,
            self.pii,
            audit=self.audit,
            pseudonym=self.keys.pseudonym,
        )
        checks = (fingerprint_check(self.fingerprints), *([self.pii] if self.pii else []))
        ctx = CheckContext(
            codec=self.codec,
            policy=self.policy,
            audit=self.audit,
            pseudonym=self.keys.pseudonym,
            agreement_active=self._agreement_active,
            clock=clock,
            max_violations=self.settings.limits.max_violations,
            fingerprints=self.fingerprints,
            content_checks=checks,
            telemetry=self.telemetry,
            erased=self.store.erased_tenants,
        )
        self.checks = SinkChecks(
            ctx,
            configured=self.settings.sinks,
            default_mode=self.settings.default_mode,
            batches={VerifiedDataset: _GuardDatasets(self)},
        )
        # -- tenancy wiring (kairo_guard.tenancy.services): agreements ... export ------
        self.tenancy = tenant_services(
            store=self.store,
            keys=self.keys,
            audit=self.audit,
            codec=self.codec,
            policy=self.policy,
            checks=self.checks,
            retention=self.retention,
            clock=clock,
            home=self.settings.home,
            max_record_bytes=self.settings.limits.max_record_bytes,
        )

    # -- lifecycle -------------------------------------------------------------------

    def clock(self) -> float:
        """Return the guard's notion of now (Unix seconds)."""
        return self._clock()

    def close(self) -> None:
        """Flush the audit log and close the store. Idempotent."""
        try:
            self.audit.close()
        finally:
            self.store.close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sealing ---------------------------------------------------------------------

    def seal(
        self,
        content: object,
        *,
        tenant: TenantId,
        data_class: DataClass | str = DataClass.CUSTOMER_CONTENT,
        source: str = "api",
        created_at: float | None = None,
    ) -> str:
        """Seal ``content`` as ``tenant``'s restricted data; see :meth:`Sealer.seal`."""
        return self.sealer.seal(
            content, tenant=tenant, data_class=data_class, source=source, created_at=created_at
        )

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
        """Seal a streamed body known by its digest; see :meth:`Sealer.seal_digest`."""
        return self.sealer.seal_digest(
            digest,
            tenant=tenant,
            data_class=data_class,
            source=source,
            created_at=created_at,
            audit=audit,
        )

    def label_record(
        self,
        record: Mapping[str, Any],
        *,
        tenant: TenantId,
        source: str = "api",
        data_class: DataClass | str = DataClass.CUSTOMER_CONTENT,
    ) -> dict[str, Any]:
        """Return ``record`` with its seal under ``_kairo``; see :meth:`Sealer.label_record`."""
        return self.sealer.label_record(record, tenant=tenant, source=source, data_class=data_class)

    def seal_operator_data(self, content: object, *, source: str) -> str:
        """Vet and seal operator data; see :meth:`OperatorVetting.seal`."""
        return self.vetting.seal(content, source=source)

    def open_seal(self, seal: str) -> Label:
        """Verify a seal and return its label. Raises SealError if it does not verify."""
        return self.codec.open(seal)

    # -- the fingerprint net -----------------------------------------------------------

    def index_content(self, tenant: TenantId, content: object) -> int:
        """Index ``content`` as ``tenant``'s; see :meth:`FingerprintNet.index`."""
        return self.net.index(tenant, content)

    def export_fingerprint_filter(self, path: Path, *, fp_rate: float = 0.001) -> int:
        """Write the signed Bloom filter; see :meth:`FingerprintNet.export_filter`."""
        return self.net.export_filter(path, fp_rate=fp_rate)

    def load_fingerprint_filter(self, path: Path) -> FingerprintFilter:
        """Read and verify a filter; see :meth:`FingerprintNet.load_filter`."""
        return self.net.load_filter(path)

    # -- sinks -----------------------------------------------------------------------

    def resolve_sink(
        self,
        sink: Sink | str,
        *,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
    ) -> Sink:
        """Return the sink ``sink`` names; see :meth:`SinkChecks.resolve`."""
        return self.checks.resolve(sink, kind=kind, tenant=tenant, mode=mode)

    def start_check(
        self,
        sink: Sink | str,
        *,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
    ) -> SinkCheck:
        """Begin a record-by-record check; see :meth:`SinkChecks.start`."""
        return self.checks.start(sink, kind=kind, tenant=tenant, mode=mode)

    def check(
        self,
        records: object,
        *,
        sink: Sink | str,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
    ) -> CheckReport:
        """Decide every record for ``sink``, never raising; see :meth:`SinkChecks.check`."""
        return self.checks.check(records, sink=sink, kind=kind, tenant=tenant, mode=mode)

    def checked(
        self,
        records: Iterable[T],
        *,
        sink: Sink | str,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
        on_report: ReportCallback | None = None,
    ) -> Iterator[T]:
        """Yield the records that may pass, lazily; see :meth:`SinkChecks.checked`."""
        return self.checks.checked(
            records, sink=sink, kind=kind, tenant=tenant, mode=mode, on_report=on_report
        )

    def achecked(
        self,
        records: AsyncIterable[T],
        *,
        sink: Sink | str,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
        on_report: ReportCallback | None = None,
    ) -> AsyncIterator[T]:
        """Async :meth:`checked`; see :meth:`SinkChecks.achecked`."""
        return self.checks.achecked(
            records, sink=sink, kind=kind, tenant=tenant, mode=mode, on_report=on_report
        )

    def sink(
        self,
        name: Sink | str,
        *,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
        data: str | Iterable[str] | None = None,
        on_report: ReportCallback | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function that feeds a sink: its data arguments are checked first
        (``data`` names them; default the first parameter). See
        :mod:`kairo_guard.enforce.decorators`.

        Raises:
            ConfigError: at decoration time, for a bad sink or unknown parameter names.
        """
        resolved = self.checks.resolve(name, kind=kind, tenant=tenant, mode=mode)
        return guard_sink(self.checks, resolved, data, on_report)

    def tenant_context(self, tenant: TenantId) -> AbstractContextManager[TenantId]:
        """Run a block as serving ``tenant``: shared sinks inside it refuse its content."""
        return context.tenant_context(tenant)

    # -- agreements (kairo_guard.tenancy.agreements) ------------------------------------

    def _agreement_active(self, tenant: TenantId, now: float) -> bool:
        return self.tenancy.agreements.active(tenant, now)

    def agreement_active(self, tenant: TenantId) -> bool:
        """True if ``tenant`` may fine-tune now; see :meth:`Agreements.active`."""
        return self.tenancy.agreements.active(tenant)

    def grant_agreement(
        self,
        tenant: TenantId,
        *,
        expires_at: Expiry = None,
        reference: str = "",
        scope: str = DEFAULT_SCOPE,
    ) -> Agreement:
        """Record an agreement (idempotent by reference); see :meth:`Agreements.grant`."""
        return self.tenancy.agreements.grant(
            tenant, expires_at=expires_at, reference=reference, scope=scope
        )

    def revoke_agreement(self, tenant: TenantId, agreement_id: str | None = None) -> int:
        """Revoke one or all of the tenant's agreements; see :meth:`Agreements.revoke`."""
        return self.tenancy.agreements.revoke(tenant, agreement_id)

    def agreements(self, tenant: TenantId | None = None) -> list[Agreement]:
        """Return agreements; see :meth:`Agreements.list_agreements`."""
        return self.tenancy.agreements.list_agreements(tenant)

    # -- tenant datasets and models (kairo_guard.tenancy.dataset_service, .models) --------

    def tenant_dataset(self, tenant: TenantId) -> DatasetBuilder:
        """Return a builder of ``tenant``'s dataset; see :meth:`DatasetService.builder`."""
        return self.tenancy.datasets.builder(tenant)

    def open_dataset(self, path: Path | str) -> VerifiedDataset:
        """Verify a dataset directory; see :meth:`DatasetService.open`."""
        return self.tenancy.datasets.open(path)

    def check_dataset(
        self, dataset: VerifiedDataset, *, sink: Sink | str, mode: Mode | str | None = None
    ) -> CheckReport:
        """Decide a dataset for ``sink``, never raising; see :meth:`DatasetAdmission.check`."""
        return self.checks.check(dataset, sink=sink, mode=mode)

    def datasets(self, tenant: TenantId | None = None) -> list[DatasetInfo]:
        """Return recorded datasets; see :meth:`DatasetService.list_datasets`."""
        return self.tenancy.datasets.list_datasets(tenant)

    def prune_dataset(
        self, dataset_id: str, keep: Callable[[Label], bool], *, reason: str
    ) -> tuple[int, int]:
        """Keep the records ``keep`` accepts, re-signed; see :meth:`DatasetService.prune`."""
        return self.tenancy.datasets.prune(dataset_id, keep, reason=reason)

    def delete_datasets(self, tenant: TenantId) -> int:
        """Delete ``tenant``'s datasets; see :meth:`DatasetService.delete`."""
        return self.tenancy.datasets.delete(tenant)

    def register_model(
        self, model_id: str, *, dataset: Manifest | VerifiedDataset | str | Path, owner: TenantId
    ) -> ModelInfo:
        """Register ``owner``'s fine-tuned model; see :meth:`ModelRegistry.register`."""
        return self.tenancy.models.register(model_id, dataset=dataset, owner=owner)

    def register_shared_model(
        self,
        model_id: str,
        *,
        sink: Sink | str,
        dataset: Manifest | VerifiedDataset | str | Path | None = None,
    ) -> ModelInfo:
        """Register a shared model; see :meth:`ModelRegistry.register_shared`."""
        return self.tenancy.models.register_shared(model_id, sink=sink, dataset=dataset)

    def check_model_access(self, model_id: str, tenant: TenantId) -> bool:
        """True if ``tenant`` may call ``model_id``; see :meth:`ModelRegistry.may_call`."""
        return self.tenancy.models.may_call(model_id, tenant)

    def models(self, tenant: TenantId | None = None) -> list[ModelInfo]:
        """Return registered models; see :meth:`ModelRegistry.list_models`."""
        return self.tenancy.models.list_models(tenant)

    def mark_models_for_deletion(self, tenant: TenantId) -> int:
        """Mark ``tenant``'s models; see :meth:`ModelRegistry.mark_for_deletion`."""
        return self.tenancy.models.mark_for_deletion(tenant)

    # -- retention, erasure, export (kairo_guard.tenancy.retention, .erasure, .export) ----

    def set_retention(self, tenant: TenantId, data_class: str, seconds: int | None) -> None:
        """Set ``tenant``'s own period, audited; see :meth:`Retention.set_period`."""
        self.tenancy.retention.set_period(tenant, data_class, seconds)

    def record_provenance(self, seal: str) -> None:
        """Record a tenant seal's provenance row; see :meth:`Retention.record_provenance`."""
        self.tenancy.retention.record_provenance(seal)

    def sweep_retention(self, *, dry_run: bool = False) -> SweepReport:
        """Delete what expired; see :meth:`Retention.sweep`."""
        return self.tenancy.retention.sweep(dry_run=dry_run)

    def erase_tenant(self, tenant: TenantId, *, receipt_path: Path | None = None) -> ErasureReceipt:
        """Erase ``tenant``, return the signed receipt; see :meth:`Erasure.erase`."""
        return self.tenancy.erasure.erase(tenant, receipt_path=receipt_path)

    def export_tenant(self, tenant: TenantId) -> dict[str, Any]:
        """Return what the guard holds about ``tenant``; see :meth:`TenantExport.export`."""
        return self.tenancy.export.export(tenant)


class _GuardDatasets:
    """Verified tenant datasets meet a sink whole: :class:`DatasetAdmission`, looked up
    at call time (the tenancy services are built after the sink checks they use)."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def check(self, value: Any, sink: Sink, mode: Mode | None) -> CheckReport:
        return self._guard.tenancy.admission.check(value, sink, mode)

    def admit(self, value: Any, sink: Sink, report_to: ReportCallback) -> Any:
        return self._guard.tenancy.admission.admit(value, sink, report_to)
