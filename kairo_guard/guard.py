"""The :class:`Guard` facade: configured once, used by training code, middleware and CLI."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import orjson

from kairo_guard.audit.log import AuditLog
from kairo_guard.config import Settings, load_settings
from kairo_guard.core import context as _context
from kairo_guard.core.content import canonical_json, content_digest
from kairo_guard.core.exceptions import ConfigError, ContentRefused, StoreError
from kairo_guard.core.keys import (
    PURPOSE_AUDIT_HEAD,
    PURPOSE_FILTER,
    PURPOSE_FINGERPRINT,
    KeyRing,
    load_key_ring,
    pseudonymize_name,
)
from kairo_guard.core.policy import Policy
from kairo_guard.core.report import CheckReport
from kairo_guard.core.seal import Label, SealCodec
from kairo_guard.core.sinks import Sink, make_sink
from kairo_guard.core.types import (
    SEAL_FIELD,
    DataClass,
    Mode,
    Sealed,
    SinkKind,
    TenantId,
    validate_tenant,
)
from kairo_guard.detect.fingerprint import Fingerprinter, FingerprintIndex
from kairo_guard.detect.pii_check import LazyPiiCheck
from kairo_guard.enforce.check import FINGERPRINT_RULE, CheckContext, SinkCheck, fingerprint_check
from kairo_guard.otel.instrumentation import GuardTelemetry
from kairo_guard.store.datasets import DatasetInfo, ModelInfo
from kairo_guard.store.sqlite import DB_FILE_NAME, DEFAULT_SCOPE, Agreement, SQLiteStore, Store
from kairo_guard.store.tenants import ProvenanceRow
from kairo_guard.tenancy import dataset_builder as _dataset_builder
from kairo_guard.tenancy import datasets as _datasets
from kairo_guard.tenancy import models as _registry
from kairo_guard.tenancy.dataset_builder import DatasetBuilder
from kairo_guard.tenancy.datasets import VerifiedDataset
from kairo_guard.tenancy.erasure import ErasureReceipt
from kairo_guard.tenancy.erasure import erase_tenant as _erase_tenant
from kairo_guard.tenancy.export import export_tenant as _export_tenant
from kairo_guard.tenancy.manifest import Manifest
from kairo_guard.tenancy.retention import RetentionPolicy, SweepReport
from kairo_guard.tenancy.retention import sweep as _sweep_retention

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

AUDIT_DIR_NAME = "audit"


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
        self._pii_enabled = pii_gate
        self.telemetry = GuardTelemetry(tracer_provider, meter_provider)
        self.settings: Settings = load_settings(
            home=home, config_file=config_file, default_mode=default_mode, env=env
        )
        home_path = self.settings.home
        if isinstance(key, KeyRing):
            self.keys = key
        elif isinstance(key, str):
            self.keys = KeyRing.from_env_value(key)
        else:
            self.keys = load_key_ring(home_path, env=env)
        if self.settings.db_url and not self.settings.db_url.startswith("sqlite:"):
            raise ConfigError(
                f"unsupported KAIRO_GUARD_DB_URL {self.settings.db_url!r}: "
                "this version supports sqlite:///PATH (PostgreSQL support is planned)"
            )
        db_path = home_path / DB_FILE_NAME
        if self.settings.db_url:
            db_path = Path(self.settings.db_url.removeprefix("sqlite:///"))
        self._clock = clock
        self.codec = SealCodec(self.keys)
        self.policy = Policy(extra_rules=self.settings.rules)
        self.store: Store = store if store is not None else SQLiteStore(db_path)
        limits = self.settings.limits
        try:
            self.audit = AuditLog(
                home_path / AUDIT_DIR_NAME,
                self.keys.subkey(PURPOSE_AUDIT_HEAD),
                self.keys.signing_key_id,
                batch_size=limits.audit_batch_size,
                flush_interval=limits.audit_flush_ms / 1000,
            )
        except BaseException:
            if store is None:
                self.store.close()  # ours to close: no audit log, no guard
            raise
        thresholds = self.settings.fingerprints
        # Derived from the pseudonym key, which stays fixed across rotations, so the
        # index stays valid when the signing key changes.
        self.fingerprints = FingerprintIndex(
            self.store,
            Fingerprinter(self.keys.subkey(PURPOSE_FINGERPRINT, self.keys.pseudonym_key_id)),
            min_shared=thresholds.min_shared,
            min_fraction=thresholds.min_fraction,
            boilerplate_tenants=thresholds.boilerplate_tenants,
        )
        self._ctx = CheckContext(
            codec=self.codec,
            policy=self.policy,
            audit=self.audit,
            pseudonym=self.keys.pseudonym,
            agreement_active=self._agreement_active,
            clock=clock,
            max_violations=limits.max_violations,
            fingerprints=self.fingerprints,
            content_checks=(fingerprint_check(self.fingerprints), *self._pii_checks()),
            telemetry=self.telemetry,
            erased=lambda: self.store.erased_tenants(),
        )
        self.retention = RetentionPolicy(
            self.store, self.settings.retention, self.settings.agent_run_retention
        )

    def _pii_checks(self) -> tuple[LazyPiiCheck, ...]:
        pii = self.settings.pii
        self.pii: LazyPiiCheck | None = None
        if not (pii.enabled if self._pii_enabled is None else self._pii_enabled):
            return ()

        def build() -> Any:
            from kairo_guard.detect.pii import PiiGate

            return PiiGate(
                entities=pii.entities,
                thresholds=pii.thresholds,
                allow_list=pii.allow_list,
                model=pii.model,
                processes=pii.processes,
            )

        check = LazyPiiCheck(build)
        self.pii = check
        return (check,)

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
        """Return a seal binding ``content`` to ``tenant`` as restricted data.

        Only restricting classes (customer content, usage telemetry) can be sealed here;
        permitting classes are minted only by the checks that justify them.

        Raises:
            ValueError: for a permitting class or an invalid tenant or source.
            ContentError: if the content cannot be digested.
        """
        cls = DataClass(data_class)
        if not cls.restricts:
            raise ValueError(
                f"{cls} cannot be sealed directly: it is minted only by the checks that "
                "justify it (the telemetry aggregator, the operator-data label command)"
            )
        return self.seal_digest(
            content_digest(content),
            tenant=tenant,
            data_class=cls,
            source=source,
            created_at=created_at,
        )

    def seal_operator_data(self, content: object, *, source: str) -> str:
        """Vouch for public, licensed or synthetic data: seal it as ``operator_public``.

        The content must not overlap any tenant's indexed content (the fingerprint
        net); what is refused is audited with the matching tenant's pseudonym.

        Raises:
            ContentRefused: with rule ``fingerprint.tenant-content`` when it overlaps.
            ContentError: if it cannot be digested.
        """
        digest = content_digest(content)
        if self.pii is not None:
            self.pii.refuse_if_pii(content)
        found = self.fingerprints.overlap(content)
        if found is not None:
            pseudonym = self.keys.pseudonym(found.tenant)
            self.audit.append(
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
        return self._mint(digest, DataClass.OPERATOR_PUBLIC, None, source)

    def _mint(
        self,
        digest: str,
        cls: DataClass,
        tenant: TenantId | None,
        source: str,
        *,
        created_at: float | None = None,
        audit: Mapping[str, Any] | None = None,
    ) -> str:
        """Seal a digest; the one place labels are made. Callers check the policy."""
        created = int(self._clock() if created_at is None else created_at)
        retention = self.retention.seconds(tenant, cls, source)
        label = Label.create(
            tenant=tenant,
            data_class=cls,
            source=source,
            created_at=created,
            expires_at=created + retention if retention else None,
            digest=digest,
        )
        seal = self.codec.seal(label)
        pseudonym = self.keys.pseudonym(tenant) if tenant else None
        self.audit.append(
            {
                "event": "seal",
                "class": cls.value,
                "tenant": pseudonym,
                # a source may name its tenant ("upload:acme"): the log keeps pseudonyms only
                "source": pseudonymize_name(source, tenant, pseudonym),
                "digest": digest,
                **(audit or {}),
            }
        )
        return seal

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
        cls = DataClass(data_class)
        if not cls.restricts:
            raise ValueError(f"{cls} cannot be sealed directly")
        return self._mint(digest, cls, tenant, source, created_at=created_at, audit=audit)

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
        of it is the byte-verifiable line form (:func:`~kairo_guard.core.content.sealed_line`).

        Raises:
            ValueError, ContentError: as :meth:`seal`.
        """
        body = orjson.loads(canonical_json(record))
        return {
            **body,
            SEAL_FIELD: self.seal(body, tenant=tenant, data_class=data_class, source=source),
        }

    def index_content(self, tenant: TenantId, content: object) -> int:
        """Fingerprint ``content`` as ``tenant``'s customer content (the laundering net).

        Returns:
            How many fingerprints were indexed (0 for text under 50 characters).
        """
        count = self.fingerprints.add(validate_tenant(tenant), content)
        self.audit.append(
            {"event": "fingerprints.index", "tenant": self.keys.pseudonym(tenant), "count": count}
        )
        return count

    def export_fingerprint_filter(self, path: Path, *, fp_rate: float = 0.001) -> int:
        """Write the index as a signed Bloom filter (see :mod:`kairo_guard.detect.bloom`).

        Fingerprints that boilerplate discounting ignores are left out.

        Returns:
            How many fingerprints the filter holds.
        """
        from kairo_guard.detect.bloom import FingerprintFilter

        counting = self._countable_fingerprints()
        index = self.fingerprints
        flt = FingerprintFilter.build(
            counting,
            count=len(counting),
            fp_rate=fp_rate,
            meta={
                "min_shared": index.min_shared,
                "min_fraction": index.min_fraction,
                "created_at": self._clock(),
            },
        )
        flt.save(path, self.keys.subkey(PURPOSE_FILTER, self.keys.pseudonym_key_id))
        self.audit.append({"event": "fingerprints.export", "count": len(counting)})
        return len(counting)

    def load_fingerprint_filter(self, path: Path) -> Any:
        """Read and verify a filter written by :meth:`export_fingerprint_filter`."""
        from kairo_guard.detect.bloom import FingerprintFilter

        return FingerprintFilter.load(
            path, self.keys.subkey(PURPOSE_FILTER, self.keys.pseudonym_key_id)
        )

    def _countable_fingerprints(self) -> list[int]:
        limit = self.fingerprints.boilerplate_tenants
        kept: list[int] = []
        current, tenants = None, 0
        for fp, _ in self.store.iter_fingerprints():
            if fp != current:
                if current is not None and tenants < limit:
                    kept.append(current)
                current, tenants = fp, 0
            tenants += 1
        if current is not None and tenants < limit:
            kept.append(current)
        return kept

    def open_seal(self, seal: str) -> Label:
        """Verify a seal and return its label. Raises SealError if it does not verify."""
        return self.codec.open(seal)

    # -- sinks -----------------------------------------------------------------------

    def resolve_sink(
        self,
        sink: Sink | str,
        *,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
    ) -> Sink:
        """Return a :class:`Sink`: as given, from config by name, or built from ``kind``.

        Raises:
            ConfigError: an unknown sink name without a kind, or a conflicting kind.
        """
        if isinstance(sink, Sink):
            return (
                sink
                if mode is None
                else make_sink(sink.name, sink.kind, tenant=sink.tenant, mode=mode)
            )
        configured = self.settings.sinks.get(sink)
        if configured is not None:
            if kind is not None and make_sink(sink, kind, tenant=tenant).label != configured.label:
                raise ConfigError(f"sink {sink!r} is configured as {configured.label}, not {kind}")
            return (
                configured
                if mode is None
                else make_sink(sink, configured.kind, tenant=configured.tenant, mode=mode)
            )
        if kind is None:
            raise ConfigError(
                f"unknown sink {sink!r}: give kind=... or declare [sinks.{sink}] in the config"
            )
        return make_sink(sink, kind, tenant=tenant, mode=mode or self.settings.default_mode)

    def start_check(self, sink: Sink | str, *, mode: Mode | str | None = None) -> SinkCheck:
        """Begin a check of records one at a time (what ``check`` and the CLI build on)."""
        resolved = self.resolve_sink(sink)
        return SinkCheck(
            self._ctx, resolved, Mode(mode) if mode else resolved.mode, _context.current_tenant()
        )

    def check(
        self,
        records: Iterable[object] | object,
        *,
        sink: Sink | str,
        mode: Mode | str | None = None,
    ) -> CheckReport:
        """Decide every record for ``sink`` and return the report; never raises on blocks.

        ``records`` is a list, tuple, generator, or one record (a dict, str, bytes or
        :class:`~kairo_guard.core.types.Sealed`).
        """
        if isinstance(records, VerifiedDataset):
            return self.check_dataset(records, sink=sink, mode=mode)
        run = self.start_check(sink, mode=mode)
        for item in _as_records(records):
            run.decide(item)
        return run.finish()

    def checked(
        self,
        records: Iterable[T],
        *,
        sink: Sink | str,
        mode: Mode | str | None = None,
        on_report: Callable[[CheckReport], None] | None = None,
    ) -> Iterator[T]:
        """Yield the records that may pass, checking each lazily as it is consumed.

        In ``enforce`` mode the first refused record raises
        :class:`IsolationViolation` before anything after it is read; ``filter`` drops
        refused records; ``observe`` yields everything. A :class:`VerifiedDataset` is
        decided whole, at once (see :mod:`kairo_guard.tenancy.datasets`).
        """
        if isinstance(records, VerifiedDataset):
            resolved = self.resolve_sink(sink, mode=mode)
            admitted = _datasets.admit_dataset(self, resolved, records, on_report or _ignore)
            return iter(admitted)
        run = self.start_check(sink, mode=mode)
        return _checked_iter(run, records, on_report)

    def achecked(
        self,
        records: AsyncIterable[T],
        *,
        sink: Sink | str,
        mode: Mode | str | None = None,
        on_report: Callable[[CheckReport], None] | None = None,
    ) -> AsyncIterator[T]:
        """Async variant of :meth:`checked` for async iterables."""
        run = self.start_check(sink, mode=mode)
        return _achecked_iter(run, records, on_report)

    def sink(
        self,
        name: str,
        *,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
        data: str | Iterable[str] | None = None,
        on_report: Callable[[CheckReport], None] | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function that feeds a sink; its data arguments are checked first.

        Args:
            name: the sink's name (looked up in config if ``kind`` is not given).
            kind: ``shared-training``, ``shared-fine-tune``, ``shared-eval`` or
                ``tenant-fine-tune`` (with ``tenant``) / ``tenant-fine-tune:T``.
            tenant: the tenant of a tenant fine-tune sink.
            mode: ``enforce`` (default), ``filter`` or ``observe``.
            data: the parameter name(s) holding records (default: the first parameter).
            on_report: called with each check's report (refusals are also logged).

        Raises:
            ConfigError: at decoration time, for a bad sink or unknown parameter names.
        """
        from kairo_guard.enforce.decorators import guard_sink

        resolved = self.resolve_sink(name, kind=kind, tenant=tenant, mode=mode)
        return guard_sink(self, resolved, data, on_report)

    def tenant_context(self, tenant: TenantId) -> AbstractContextManager[TenantId]:
        """Run a block as serving ``tenant``: shared sinks inside it refuse its content."""
        return _context.tenant_context(tenant)

    # -- agreements ------------------------------------------------------------------

    def _agreement_active(self, tenant: TenantId, now: float) -> bool:
        try:
            return any(a.permits_fine_tune(now) for a in self.store.list_agreements(tenant))
        except StoreError:
            return False  # fail closed: no proof of an agreement, no fine-tune

    def agreement_active(self, tenant: TenantId) -> bool:
        """True if ``tenant`` holds an active fine-tune agreement now (False if unsure)."""
        return self._agreement_active(tenant, self._clock())

    def grant_agreement(
        self,
        tenant: TenantId,
        *,
        expires_at: float | None = None,
        reference: str = "",
        scope: str = DEFAULT_SCOPE,
    ) -> Agreement:
        """Record an agreement for ``tenant`` (audited) and return it.

        Only an agreement whose ``scope`` (comma-separated words) includes
        ``fine-tune`` permits a tenant fine-tune.
        """
        agreement = self.store.grant_agreement(
            tenant, now=self._clock(), expires_at=expires_at, reference=reference, scope=scope
        )
        self.audit.append(
            {
                "event": "agreement.grant",
                "agreement": agreement.id,
                "tenant": self.keys.pseudonym(tenant),
                "scope": scope,
                "expires_at": expires_at,
            }
        )
        return agreement

    def revoke_agreement(self, tenant: TenantId, agreement_id: str | None = None) -> int:
        """Revoke one or all of the tenant's agreements (audited); return how many."""
        count = self.store.revoke_agreements(tenant, now=self._clock(), agreement_id=agreement_id)
        self.audit.append(
            {
                "event": "agreement.revoke",
                "agreement": agreement_id,
                "tenant": self.keys.pseudonym(tenant),
                "revoked": count,
            }
        )
        return count

    def agreements(self, tenant: TenantId | None = None) -> list[Agreement]:
        """Return agreements, optionally for one tenant."""
        return self.store.list_agreements(tenant)

    # -- tenant datasets and models (see datasets.py, dataset_builder.py, registry.py) ---

    def tenant_dataset(self, tenant: TenantId) -> DatasetBuilder:
        """Return a builder of ``tenant``'s fine-tune dataset (a signed manifest on write).

        Raises:
            ValueError: for an invalid tenant id.
        """
        return DatasetBuilder(self, tenant)

    def open_dataset(self, path: Path | str) -> VerifiedDataset:
        """Verify a dataset directory (manifest signature, count, Merkle root) and return
        it, ready for a ``tenant-fine-tune`` sink.

        Raises:
            DatasetError: unreadable, unsigned by a held key, or records not the manifest's.
        """
        return _datasets.open_dataset(self, path)

    def check_dataset(
        self, dataset: VerifiedDataset, *, sink: Sink | str, mode: Mode | str | None = None
    ) -> CheckReport:
        """Decide a verified dataset for ``sink``: the report, never raising on blocks."""
        resolved = self.resolve_sink(sink)
        return _datasets.check_dataset(self, dataset, resolved, Mode(mode) if mode else None)[1]

    def datasets(self, tenant: TenantId | None = None) -> list[DatasetInfo]:
        """Return recorded datasets, optionally one tenant's."""
        return self.store.list_datasets(tenant)

    def prune_dataset(
        self, dataset_id: str, keep: Callable[[Label], bool], *, reason: str
    ) -> tuple[int, int]:
        """Keep only records whose label ``keep`` accepts; re-sign the manifest (its
        ``supersedes`` names the old one); audited. Returns ``(kept, removed)``.

        Raises:
            DatasetError: unknown dataset, or its files do not verify.
        """
        return _dataset_builder.prune_dataset(self, dataset_id, keep, reason=reason)

    def delete_datasets(self, tenant: TenantId) -> int:
        """Delete ``tenant``'s dataset files and rows (audited, counts only); return how many."""
        return _dataset_builder.delete_datasets(self, tenant)

    def register_model(
        self, model_id: str, *, dataset: Manifest | VerifiedDataset | str | Path, owner: TenantId
    ) -> ModelInfo:
        """Register a model fine-tuned on ``owner``'s dataset (a manifest, verified
        dataset, dataset id or directory); the manifest must verify and its agreement
        still be active.

        Raises:
            RegistryError: refused (audited); ValueError: a bad model id or tenant.
        """
        return _registry.register_model(self, model_id, dataset=dataset, owner=owner)

    def register_shared_model(
        self,
        model_id: str,
        *,
        sink: Sink | str,
        dataset: Manifest | VerifiedDataset | str | Path | None = None,
    ) -> ModelInfo:
        """Register a model served to every tenant, trained at the shared ``sink``.

        ``dataset`` is lineage a pipeline may declare: any tenant dataset is refused.

        Raises:
            RegistryError: a tenant fine-tune sink, a tenant dataset, or the id of a
                tenant model (``model.tenant-derived``, audited).
        """
        return _registry.register_shared_model(self, model_id, sink=sink, dataset=dataset)

    def check_model_access(self, model_id: str, tenant: TenantId) -> bool:
        """True if ``tenant`` may call ``model_id``: its own or a shared model, not marked
        for deletion. False for unknown models or when unsure; denials are audited."""
        return _registry.check_model_access(self, model_id, tenant)

    def models(self, tenant: TenantId | None = None) -> list[ModelInfo]:
        """Return registered models, optionally one tenant's."""
        return _registry.list_models(self, tenant)

    def mark_models_for_deletion(self, tenant: TenantId) -> int:
        """Mark ``tenant``'s models ``pending_deletion`` (served to no one); return how many."""
        return _registry.mark_models_for_deletion(self, tenant)

    # -- retention, erasure, export (see retention.py, erasure.py, export.py) ------------

    def set_retention(self, tenant: TenantId, data_class: str, seconds: int | None) -> None:
        """Set (None: remove) ``tenant``'s own retention period for a data class or
        ``agent_run``, audited; it applies to content sealed from now on.

        Raises:
            ValueError: for an invalid tenant, class or period.
        """
        self.retention.set(tenant, data_class, seconds)
        self.audit.append(
            {
                "event": "retention.set",
                "tenant": self.keys.pseudonym(tenant),
                "class": data_class,
                "seconds": seconds,
            }
        )

    def record_provenance(self, seal: str) -> None:
        """Record a provenance row (digest and label, no content) for a tenant's seal.

        Raises:
            SealError: if the seal does not verify; ValueError: if it names no tenant.
        """
        label = self.codec.open(seal)
        if label.tenant is None:
            raise ValueError("only a tenant's seals have provenance rows")
        row = ProvenanceRow(
            label.digest,
            label.tenant,
            label.data_class.value,
            label.source,
            label.created_at,
            label.expires_at,
        )
        self.store.add_provenance([row])

    def sweep_retention(self, *, dry_run: bool = False) -> SweepReport:
        """Delete expired dataset records and provenance rows; see :func:`retention.sweep`."""
        return _sweep_retention(self, dry_run=dry_run)

    def erase_tenant(self, tenant: TenantId, *, receipt_path: Path | None = None) -> ErasureReceipt:
        """Erase ``tenant`` and return the signed receipt (:mod:`kairo_guard.tenancy.erasure`)."""
        return _erase_tenant(self, tenant, receipt_path=receipt_path)

    def export_tenant(self, tenant: TenantId) -> dict[str, Any]:
        """Return what the guard holds about ``tenant``; see :mod:`kairo_guard.tenancy.export`."""
        return _export_tenant(self, tenant)


def _ignore(report: CheckReport) -> None:
    """A report callback that keeps nothing."""


def _as_records(records: Iterable[object] | object) -> Iterable[object]:
    if isinstance(records, str | bytes | bytearray | Mapping | Sealed) or not isinstance(
        records, Iterable
    ):
        return (records,)
    return records


def _checked_iter(
    run: SinkCheck, records: Iterable[T], on_report: Callable[[CheckReport], None] | None
) -> Iterator[T]:
    try:
        for item in records:
            if run.admit(item):
                yield item
    finally:
        _report(run, on_report)


async def _achecked_iter(
    run: SinkCheck, records: AsyncIterable[T], on_report: Callable[[CheckReport], None] | None
) -> AsyncIterator[T]:
    try:
        async for item in records:
            if run.admit(item):
                yield item
    finally:
        _report(run, on_report)


def _report(run: SinkCheck, on_report: Callable[[CheckReport], None] | None) -> None:
    report = run.finish()
    if on_report is not None:
        on_report(report)
