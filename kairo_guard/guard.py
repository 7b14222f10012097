"""The :class:`Guard` facade: it wires the layers (:func:`kairo_guard.assembly.build`) and
delegates; it decides nothing. Each part is a public attribute for what the facade does
not cover: ``sealer``, ``vetting``, ``checks``, ``net``, and ``tenancy`` (agreements,
datasets, models, retention, erasure, export)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal, NoReturn, ParamSpec, TypeVar

from kairo_guard import assembly, workers
from kairo_guard.assembly import AUDIT_DIR_NAME
from kairo_guard.config import Settings, load_settings
from kairo_guard.core import context
from kairo_guard.core.keys import KeyRing
from kairo_guard.core.report import CheckReport
from kairo_guard.core.seal import Label
from kairo_guard.core.signing import SignerKeys, VerifyKeys
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import DataClass, Mode, SinkKind, TenantId
from kairo_guard.detect.bloom import FingerprintFilter
from kairo_guard.detect.indexer import wait_indexed
from kairo_guard.enforce.decorators import guard_sink
from kairo_guard.enforce.service import ReportCallback
from kairo_guard.enforce.shapes import Indexed
from kairo_guard.otel.instrumentation import GuardTelemetry
from kairo_guard.store.base import DEFAULT_SCOPE, Agreement, DatasetInfo, ModelInfo, Store
from kairo_guard.tenancy.agreements import Expiry
from kairo_guard.tenancy.dataset_builder import DatasetBuilder
from kairo_guard.tenancy.datasets import VerifiedDataset
from kairo_guard.tenancy.erasure import ErasureReceipt
from kairo_guard.tenancy.manifest import Manifest
from kairo_guard.tenancy.retention import SweepReport
from kairo_guard.workers import GuardSpec

__all__ = ["AUDIT_DIR_NAME", "Guard"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
Lineage = Manifest | VerifiedDataset | str | Path


class Guard:
    """Keeps customer content out of shared training: seals, sink checks, audit.

    Args:
        home: state directory (else ``KAIRO_GUARD_HOME``, the config file, ``./.kairo-guard``).
        key: a :class:`KeyRing` or a ``KAIRO_GUARD_KEY``-style string (else the
            environment, else the key file in ``home``).
        config_file: a ``kairo-guard.toml`` (else ``KAIRO_GUARD_CONFIG``, else
            ``./kairo-guard.toml``, else one in the state directory).
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
        signer: the vetting role's Ed25519 keys, or a ``KAIRO_GUARD_SIGNER_KEY``-style
            string (else the environment, else ``signer.json`` in ``home``, else none:
            this guard cannot vouch for operator data or mint anonymized telemetry);
            ``False``: none, whatever the environment or ``home`` holds.
        verify_keys: the public keys permitting labels are verified with, or a
            ``KAIRO_GUARD_VERIFY_KEYS``-style string (else the environment, else
            ``verify-keys.json`` in ``home``); the signer's own are always added.

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
        signer: SignerKeys | str | Literal[False] | None = None,
        verify_keys: VerifyKeys | str | None = None,
    ) -> None:
        self.telemetry = GuardTelemetry(tracer_provider, meter_provider)
        self.settings: Settings = load_settings(
            home=home, config_file=config_file, default_mode=default_mode, env=env
        )
        self._clock = clock
        parts = assembly.build(
            self.settings, key, env, store, clock, pii_gate, self.telemetry,
            signer=signer, verify_keys=verify_keys,
        )  # fmt: skip
        self.keys, self.codec, self.policy = parts.keys, parts.codec, parts.policy
        self.store, self.audit, self.net = parts.store, parts.audit, parts.net
        self.fingerprints, self.pii, self.retention = parts.fingerprints, parts.pii, parts.retention
        self.sealer, self.vetting = parts.sealer, parts.vetting
        self.telemetry_vetting = parts.telemetry_vetting
        """Vets and signs the telemetry aggregator's output (anonymized telemetry)."""
        self.shards = parts.shards
        """Opens vetted shards' seals (``kp1``) at sinks."""
        self.checks, self.tenancy = parts.checks, parts.tenancy
        self.indexer = parts.indexer
        """Indexes the ingestion spool (:mod:`kairo_guard.detect.indexer`)."""
        self.spool_directory = parts.indexer.directory
        """The ingestion spool (:mod:`kairo_guard.store.spool`) of this state directory."""
        self._verify_keys, self._pii_gate = parts.verify_keys, pii_gate
        workers.track(self)  # a fork disarms it in the child

    # -- worker processes --------------------------------------------------------------

    def spec(self) -> GuardSpec:
        """What a worker process needs to open its own guard (:mod:`kairo_guard.workers`):
        the state directory, the configuration, the HMAC ring and the public keys; never
        the signing key, never a live handle."""
        settings = self.settings
        return GuardSpec(
            home=str(settings.home),
            key=self.keys.to_json().decode("ascii"),
            verify_keys=self._verify_keys.to_value(),
            config_file=None if settings.config_file is None else str(settings.config_file),
            default_mode=settings.default_mode.value,
            pii_gate=self._pii_gate,
            db_url=settings.db_url,
        )

    @classmethod
    def from_spec(cls, spec: GuardSpec) -> Guard:
        """This process's guard for ``spec``: opened on first use, the same one after.

        Raises:
            ConfigError, KeyringError, StoreError: as opening a Guard does.
        """
        return workers.opened(spec, cls._open_spec)

    @classmethod
    def _open_spec(cls, spec: GuardSpec) -> Guard:
        return cls(
            home=spec.home,
            key=KeyRing.from_json(spec.key.encode("ascii")),
            config_file=spec.config_file,
            default_mode=spec.default_mode,
            env={"KAIRO_GUARD_DB_URL": spec.db_url} if spec.db_url else {},
            pii_gate=spec.pii_gate,
            signer=False,  # a worker never vouches, whatever signer.json lies in home
            verify_keys=spec.verify_keys or None,
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a Guard holds a database connection, locks and an audit writer, and does not "
            "cross processes: give workers guard.spec() and open Guard.from_spec(spec) there"
        )

    # -- lifecycle -------------------------------------------------------------------

    def clock(self) -> float:
        """Return the guard's notion of now (Unix seconds)."""
        return self._clock()

    def wait_indexed(self, timeout: float | None = None) -> None:
        """Return once everything ingested so far is indexed: fingerprints, provenance
        rows and the audit entries of its sealing (this process indexes the spool
        itself when no indexer is running).

        Raises:
            IndexLagging: not indexed within ``timeout`` seconds (default:
                ``limits.index_wait_seconds``).
        """
        bound = self.settings.limits.index_wait_seconds if timeout is None else timeout
        wait_indexed(self.indexer, bound)

    def close(self) -> None:
        """Flush the audit log and close the store. Idempotent; nothing in a child
        process that inherited the guard through ``fork`` (the parent's to close)."""
        if "forked_from" in self.__dict__:
            return
        workers.forget(self)
        try:
            self.audit.close()
        finally:
            self.store.close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- sealing and the fingerprint net -----------------------------------------------

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

    def derive_seal(self, content: object, source: Label) -> str:
        """Seal content made from content sealed as ``source`` (a map, a tokenizer's
        output): the same label, its own digest; see :meth:`Sealer.derive`."""
        return self.sealer.derive(content, source)

    def seal_operator_data(self, content: object, *, source: str) -> str:
        """Vet and seal operator data (a shard of one); see :meth:`ShardVetting.seal`.
        Many records are vetted at once, as one shard, by ``guard.vetting.vet``."""
        return self.vetting.seal(content, source=source)

    def open_seal(self, seal: str) -> Label:
        """Verify a seal and return its label. Raises SealError if it does not verify."""
        return self.codec.open(seal)

    def index_content(self, tenant: TenantId, content: object) -> int:
        """Index ``content`` as ``tenant``'s; see :meth:`FingerprintNet.index`."""
        return self.net.index(tenant, content)

    def export_fingerprint_filter(self, path: Path, *, fp_rate: float = 0.001) -> int:
        """Write the signed Bloom filter; see :meth:`FingerprintNet.export_filter`."""
        return self.net.export_filter(path, fp_rate=fp_rate)

    def load_fingerprint_filter(self, path: Path) -> FingerprintFilter:
        """Read and verify a filter; see :meth:`FingerprintNet.load_filter`."""
        return self.net.load_filter(path)

    # -- sinks: a configured name, a kind, or a name with kind= (SinkChecks.resolve) ---

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

    def check(
        self, records: object, *, sink: Sink | str, kind: str | None = None, mode: str | None = None
    ) -> CheckReport:
        """Decide every record for ``sink``, never raising; see :meth:`SinkChecks.check`."""
        return self.checks.check(records, sink=sink, kind=kind, mode=mode)

    def checked(
        self,
        records: Iterable[T] | Indexed[T],
        *,
        sink: Sink | str,
        kind: str | None = None,
        mode: str | None = None,
        on_report: ReportCallback | None = None,
    ) -> Iterator[T]:
        """Yield the records that may pass, lazily; see :meth:`SinkChecks.checked`."""
        return self.checks.checked(records, sink=sink, kind=kind, mode=mode, on_report=on_report)

    def achecked(
        self,
        records: AsyncIterable[T],
        *,
        sink: Sink | str,
        kind: str | None = None,
        mode: str | None = None,
        on_report: ReportCallback | None = None,
    ) -> AsyncIterator[T]:
        """Async :meth:`checked`; see :meth:`SinkChecks.achecked`."""
        return self.checks.achecked(records, sink=sink, kind=kind, mode=mode, on_report=on_report)

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
        """Decorate a function that feeds a sink: its ``data`` arguments (default: the
        first) are checked first; see :mod:`kairo_guard.enforce.decorators`.

        Raises:
            ConfigError: at decoration time, for a bad sink or unknown parameter names.
        """
        resolved = self.checks.resolve(name, kind=kind, tenant=tenant, mode=mode)
        return guard_sink(self.checks, resolved, data, on_report)

    def tenant_context(self, tenant: TenantId) -> AbstractContextManager[TenantId]:
        """Run a block as serving ``tenant``: shared sinks inside it refuse its content."""
        return context.tenant_context(tenant)

    # -- what a tenant owns (guard.tenancy has the rest) -------------------------------

    def grant_agreement(
        self,
        tenant: TenantId,
        *,
        expires_at: Expiry = None,
        reference: str = "",
        scope: str = DEFAULT_SCOPE,
        valid_for: float | None = None,
    ) -> Agreement:
        """Record an agreement (idempotent by reference); see :meth:`Agreements.grant`."""
        return self.tenancy.agreements.grant(
            tenant, expires_at=expires_at, reference=reference, scope=scope, valid_for=valid_for
        )

    def revoke_agreement(self, tenant: TenantId, agreement_id: str | None = None) -> int:
        """Revoke one or all of the tenant's agreements; see :meth:`Agreements.revoke`."""
        return self.tenancy.agreements.revoke(tenant, agreement_id)

    def agreements(self, tenant: TenantId | None = None) -> list[Agreement]:
        """Return agreements; see :meth:`Agreements.list_agreements`."""
        return self.tenancy.agreements.list_agreements(tenant)

    def tenant_dataset(self, tenant: TenantId) -> DatasetBuilder:
        """Return a builder of ``tenant``'s dataset; see :meth:`DatasetService.builder`."""
        return self.tenancy.datasets.builder(tenant)

    def open_dataset(self, path: Path | str) -> VerifiedDataset:
        """Verify a dataset directory; see :meth:`DatasetService.open`."""
        return self.tenancy.datasets.open(path)

    def datasets(self, tenant: TenantId | None = None) -> list[DatasetInfo]:
        """Return recorded datasets; see :meth:`DatasetService.list_datasets`."""
        return self.tenancy.datasets.list_datasets(tenant)

    def register_model(self, model_id: str, *, dataset: Lineage, owner: TenantId) -> ModelInfo:
        """Register ``owner``'s fine-tuned model; see :meth:`ModelRegistry.register`."""
        return self.tenancy.models.register(model_id, dataset=dataset, owner=owner)

    def register_shared_model(
        self, model_id: str, *, sink: Sink | str, dataset: Lineage | None = None
    ) -> ModelInfo:
        """Register a shared model; see :meth:`ModelRegistry.register_shared`."""
        return self.tenancy.models.register_shared(model_id, sink=sink, dataset=dataset)

    def check_model_access(self, model_id: str, tenant: TenantId) -> bool:
        """True if ``tenant`` may call ``model_id``; see :meth:`ModelRegistry.may_call`."""
        return self.tenancy.models.may_call(model_id, tenant)

    def models(self, tenant: TenantId | None = None) -> list[ModelInfo]:
        """Return registered models; see :meth:`ModelRegistry.list_models`."""
        return self.tenancy.models.list_models(tenant)

    def set_retention(self, tenant: TenantId, data_class: str, seconds: int | None) -> None:
        """Set ``tenant``'s own period, audited; see :meth:`Retention.set_period`."""
        self.tenancy.retention.set_period(tenant, data_class, seconds)

    def sweep_retention(self, *, dry_run: bool = False) -> SweepReport:
        """Delete what expired; see :meth:`Retention.sweep`."""
        return self.tenancy.retention.sweep(dry_run=dry_run)

    def erase_tenant(self, tenant: TenantId, *, receipt_path: Path | None = None) -> ErasureReceipt:
        """Erase ``tenant``, return the signed receipt; see :meth:`Erasure.erase`."""
        return self.tenancy.erasure.erase(tenant, receipt_path=receipt_path)

    def export_tenant(self, tenant: TenantId) -> dict[str, Any]:
        """Return what the guard holds about ``tenant``; see :meth:`TenantExport.export`."""
        return self.tenancy.export.export(tenant)
