"""Building the guard's parts from settings, once: what the Guard facade delegates to.

:func:`build` wires every layer in order (keys, store, audit log, fingerprint index and
net, PII gate, sealing, vetting, sink checks, tenancy services) and returns them as
:class:`Parts`; the helpers it uses each return a ready collaborator or raise the error
that names what to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from hashlib import sha256
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import orjson

from kairo_guard.audit.log import AuditLog
from kairo_guard.audit_opening import AUDIT_DIR_NAME as AUDIT_DIR_NAME  # re-exported
from kairo_guard.audit_opening import open_audit
from kairo_guard.config import Settings
from kairo_guard.core.exceptions import ConfigError
from kairo_guard.core.keys import PURPOSE_FINGERPRINT, PURPOSE_IDENTIFIER, KeyRing
from kairo_guard.core.policy import Policy
from kairo_guard.core.seal import SealCodec
from kairo_guard.core.signing import SignerKeys, VerifyKeys
from kairo_guard.core.types import DataClass
from kairo_guard.detect.accumulation import ACCUMULATED_MIN_SHARED
from kairo_guard.detect.coverage import CoveragePublisher, wait_replicas
from kairo_guard.detect.fingerprint import (
    SCHEME,
    Fingerprinter,
    FingerprintIndex,
    fingerprint_check,
    keyed_scheme,
    scheme_mismatch,
)
from kairo_guard.detect.identifiers import CustomerIdentifierCheck, CustomerIdentifiers
from kairo_guard.detect.indexer import SpoolIndexer, wait_indexed
from kairo_guard.detect.net import FingerprintNet
from kairo_guard.detect.pii import gate as pii_gate  # constants only: presidio loads lazily
from kairo_guard.detect.pii.check import LazyPiiCheck
from kairo_guard.enforce.check import CheckContext
from kairo_guard.enforce.sealing import Sealer
from kairo_guard.enforce.service import SinkChecks
from kairo_guard.enforce.shards import ShardRegistry, ShardWriter
from kairo_guard.enforce.vetting import AllRefusals, ShardVetting
from kairo_guard.otel.instrumentation import GuardTelemetry
from kairo_guard.store.base import Store
from kairo_guard.store.keyfile import load_key_ring, load_signer, load_verify_keys
from kairo_guard.store.postgres import PostgresStore
from kairo_guard.store.spool import SPOOL_DIR_NAME
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore
from kairo_guard.tenancy.agreements import Agreements
from kairo_guard.tenancy.datasets import VerifiedDataset
from kairo_guard.tenancy.retention import RetentionPolicy
from kairo_guard.tenancy.services import TenantServices, tenant_services

OPERATOR_WINDOW_CHARS = 1_000
"""Operator texts are read in windows of this many characters (about 200 tokens, within
the gate's bounds even when names are looked for), whatever their length."""


@dataclass(frozen=True)
class Parts:
    """The guard's collaborators, wired; the Guard exposes each as an attribute."""

    keys: KeyRing
    codec: SealCodec
    policy: Policy
    store: Store
    audit: AuditLog
    fingerprints: FingerprintIndex
    pii: LazyPiiCheck | None
    net: FingerprintNet
    retention: RetentionPolicy
    sealer: Sealer
    vetting: ShardVetting
    telemetry_vetting: ShardVetting
    shards: ShardRegistry
    checks: SinkChecks
    tenancy: TenantServices
    indexer: SpoolIndexer
    verify_keys: VerifyKeys
    """The public keys permitting labels are verified with (what a worker is given)."""


def build(
    settings: Settings,
    key: KeyRing | str | None,
    env: Mapping[str, str] | None,
    store: Store | None,
    clock: Callable[[], float],
    pii_gate: bool | None,
    telemetry: GuardTelemetry,
    *,
    signer: SignerKeys | str | Literal[False] | None = None,
    verify_keys: VerifyKeys | str | None = None,
) -> Parts:
    """Wire every part of a guard from ``settings`` (see the Guard's arguments).

    Raises:
        ConfigError, KeyringError, StoreError, AuditError, PolicyError: what cannot be
            built. What was opened here (the audit log, a store not given) is closed
            again when a later part cannot be built.
    """
    keys = key_ring(key, settings.home, env)
    signing = signer_keys(signer, settings.home, env, verify_keys)
    owned = store is None
    store = open_store(settings) if store is None else store
    try:
        audit = open_audit(settings, keys, store, telemetry)
    except BaseException:
        if owned:
            store.close()  # ours to close: no audit log, no guard
        raise
    try:
        pii = (pii_check(settings, pii_gate), pii_check(settings, pii_gate, operator=True))
        return _wire(settings, keys, signing, store, audit, clock, pii, telemetry)
    except BaseException:
        try:
            audit.close()  # no guard: nothing left open behind the error
        finally:
            if owned:
                store.close()
        raise


def _wire(
    settings: Settings,
    keys: KeyRing,
    signing: tuple[SignerKeys | None, VerifyKeys],
    store: Store,
    audit: AuditLog,
    clock: Callable[[], float],
    gates: tuple[LazyPiiCheck | None, LazyPiiCheck | None],
    telemetry: GuardTelemetry,
) -> Parts:
    pii, operator_pii = gates  # strict (telemetry, the default), and operator data's
    codec, policy, pseudonym = SealCodec(keys), Policy(extra_rules=settings.rules), keys.pseudonym
    fingerprints = fingerprint_index(settings, store, keys, audit)
    # a customer's identifiers, indexed with its content; exact matches in operator data
    identifiers = CustomerIdentifiers(keys.subkey(PURPOSE_IDENTIFIER, keys.pseudonym_key_id))
    fingerprints.identifiers = identifiers
    known_identifier = CustomerIdentifierCheck(
        identifiers,
        lambda h: store.match_fingerprints(h),
        fingerprints.prefilter,
        allow=settings.pii.allow_list,
    )
    expected = keyed_scheme(keys.subkey(PURPOSE_FINGERPRINT, keys.pseudonym_key_id))
    recorded = store.claim_fingerprint_scheme(expected)
    if recorded == SCHEME:  # recorded before the scheme named its key: bind this one
        recorded = store.rebind_fingerprint_scheme(SCHEME, expected)
    stale = scheme_mismatch(recorded, expected) if recorded != expected else None
    net_check = fingerprint_check(fingerprints) if stale is None else (lambda _content: stale)
    fingerprints.stale = stale.reason if stale else None  # direct overlap questions refuse
    periods = RetentionPolicy(store, settings.retention, settings.agent_run_retention)
    indexer = SpoolIndexer(
        settings.home / SPOOL_DIR_NAME,
        fingerprinter=fingerprints.fingerprinter,
        identifiers=identifiers,
        store=store,
        codec=codec,
        pseudonym=pseudonym,
        audit=audit,
    )
    net = FingerprintNet(
        fingerprints, store, keys, audit, clock, stale=stale.reason if stale else None
    )
    sealer = Sealer(
        codec, index=net, pseudonym=pseudonym, audit=audit, clock=clock, retention=periods.seconds
    )
    agreements = Agreements(store, audit, pseudonym, clock)
    bound = settings.limits.index_wait_seconds

    replica = settings.audit_log_id  # this state directory, among those sharing the store
    indexer.coverage = CoveragePublisher(store, replica, indexer.directory)

    def watermark() -> None:
        wait_indexed(indexer, bound)  # this state directory's spool
        wait_replicas(store, replica, bound)  # and every other replica's

    policies = vetting_policies(settings, pii is not None, operator_pii is not None)
    shards = ShardRegistry(store, signing[1], policies, store)
    codec.shards = shards  # kp1 seals: records of vetted shards
    writer = ShardWriter(signing[0], store, audit=audit, clock=clock, retention=periods.seconds)

    def vetting(cls: DataClass, gate: Any) -> ShardVetting:
        return ShardVetting(
            cls, writer, fingerprints, gate, policy=policies[cls], store=store, audit=audit,
            pseudonym=pseudonym, stale_index=stale, index_watermark=watermark,
        )  # fmt: skip

    ctx = CheckContext(
        codec=codec,
        policy=policy,
        audit=audit,
        pseudonym=pseudonym,
        agreement_active=agreements.active,
        clock=clock,
        max_violations=settings.limits.max_violations,
        fingerprints=fingerprints if stale is None else None,  # no blind attribution
        content_checks=(net_check, *([pii] if pii else [])),
        operator_checks=(net_check, *([operator_pii] if operator_pii else []), known_identifier),
        telemetry=telemetry,
        erased=store.erased_tenants,
        index_watermark=watermark,
        shards=shards,
    )
    checks = SinkChecks(ctx, configured=settings.sinks, default_mode=settings.default_mode)
    tenancy = tenant_services(
        agreements=agreements,
        store=store,
        keys=keys,
        audit=audit,
        codec=codec,
        policy=policy,
        checks=checks,
        retention=periods,
        clock=clock,
        home=settings.home,
        max_record_bytes=settings.limits.max_record_bytes,
        index_watermark=watermark,
    )
    checks.register(VerifiedDataset, tenancy.admission)
    operator = vetting(DataClass.OPERATOR_PUBLIC, AllRefusals(operator_pii, known_identifier))
    return Parts(
        keys, codec, policy, store, audit, fingerprints, pii, net, periods, sealer, operator,
        vetting(DataClass.ANONYMIZED_TELEMETRY, pii), shards, checks, tenancy, indexer,
        signing[1],
    )  # fmt: skip


def key_ring(key: KeyRing | str | None, home: Path, env: Mapping[str, str] | None) -> KeyRing:
    """Return the key ring given, parsed from a ``KAIRO_GUARD_KEY``-style string, or
    loaded from the environment or the key file in ``home``.

    Raises:
        KeyringError: no usable key ("no key, no guard").
    """
    if isinstance(key, KeyRing):
        return key
    if isinstance(key, str):
        return KeyRing.from_env_value(key)
    return load_key_ring(home, env=env)


def signer_keys(
    signer: SignerKeys | str | Literal[False] | None,
    home: Path,
    env: Mapping[str, str] | None,
    verify_keys: VerifyKeys | str | None,
) -> tuple[SignerKeys | None, VerifyKeys]:
    """Return the vetting role's signing keys (None: this process may not vouch) and
    the public keys permitting labels are verified with (those given or configured,
    and the signer's own).

    Raises:
        KeyringError: keys that are there but unusable.
    """
    if signer is False:  # this process must not vouch (a worker of a job)
        signer = None
    elif isinstance(signer, str):
        signer = SignerKeys.from_value(signer)
    elif signer is None:
        signer = load_signer(home, env=env)
    if isinstance(verify_keys, str):
        verify_keys = VerifyKeys.from_value(verify_keys)
    elif verify_keys is None:
        verify_keys = load_verify_keys(home, env=env)
    return signer, verify_keys if signer is None else verify_keys.merged(signer.public())


def vetting_policies(
    settings: Settings, strict_pii: bool, operator_pii: bool
) -> dict[DataClass, str]:
    """The version of each permitting class's vetting policy: a hash of every setting
    that decides what vetting refuses, and the release of the code that applies them. A
    shard vetted under another version is checked in full at shared sinks."""
    fp, pii = settings.fingerprints, settings.pii
    net = {
        "release": _release(),  # the recognizers' code: an upgrade re-checks old shards
        "scheme": SCHEME,
        "min_shared": fp.min_shared,
        "min_fraction": fp.min_fraction,
        "boilerplate_tenants": fp.boilerplate_tenants,
        "accumulated": ACCUMULATED_MIN_SHARED,
    }
    gate = {"thresholds": pii.thresholds, "allow_list": sorted(pii.allow_list), "model": pii.model}
    # the entity lists as the gate will use them: a default the code changes counts too
    operator_entities = pii.operator_entities or list(pii_gate.OPERATOR_ENTITIES)
    strict_entities = pii.entities or list(pii_gate.DEFAULT_ENTITIES)
    docs = {
        DataClass.OPERATOR_PUBLIC: {
            **net,
            "identifiers": True,
            "pii": operator_pii
            and {**gate, "entities": operator_entities, "window": OPERATOR_WINDOW_CHARS},
        },
        DataClass.ANONYMIZED_TELEMETRY: {
            **net,
            "pii": strict_pii and {**gate, "entities": strict_entities},
        },
    }
    return {
        cls: sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS, default=repr)).hexdigest()
        for cls, doc in docs.items()
    }


def _release() -> str:
    try:
        return version("kairo-guard")
    except PackageNotFoundError:  # a checkout that is not installed: no stable release
        return "unreleased"


def open_store(settings: Settings) -> Store:
    """Open the state store the settings name (SQLite in the state directory by default,
    ``sqlite:///PATH``, or ``postgresql://...`` for a store several replicas share).

    Raises:
        ConfigError: a database URL this version does not support (or a bad one).
        StoreError: the store cannot be opened.
    """
    url = settings.db_url
    if not url:
        return SQLiteStore(settings.home / DB_FILE_NAME)
    scheme = url.partition(":")[0].lower()  # never the whole URL: it may hold a password
    if scheme == "sqlite":
        return SQLiteStore(Path(url.removeprefix("sqlite:///")))
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise ConfigError(
        f"unsupported KAIRO_GUARD_DB_URL scheme {scheme!r}: this version supports "
        "sqlite:///PATH and postgresql://USER@HOST:PORT/DATABASE (docs/postgres.md)"
    )


def fingerprint_index(
    settings: Settings, store: Store, keys: KeyRing, audit: AuditLog
) -> FingerprintIndex:
    """Return the fingerprint index over ``store`` with the configured thresholds; its
    deletions are audited in ``audit``."""
    thresholds = settings.fingerprints
    # Keyed by the pseudonym key, which stays fixed across rotations, so the index
    # stays valid when the signing key changes.
    fingerprinter = Fingerprinter(keys.subkey(PURPOSE_FINGERPRINT, keys.pseudonym_key_id))
    index = FingerprintIndex(store, fingerprinter, min_shared=thresholds.min_shared,
                             min_fraction=thresholds.min_fraction,
                             boilerplate_tenants=thresholds.boilerplate_tenants)  # fmt: skip
    index.on_delete = lambda tenant, rows: audit.append(
        {"event": "fingerprints.delete", "tenant": keys.pseudonym(tenant), "rows": rows}
    )
    return index


def pii_check(
    settings: Settings, enabled: bool | None, *, operator: bool = False
) -> LazyPiiCheck | None:
    """Return the PII gate as a lazily built check, or None when it is off.

    ``enabled`` overrides the config's ``[pii] enabled``. The gate (spaCy) loads on
    first use; if it cannot, every record that needs it is blocked. ``operator``: the
    gate of operator data (``[pii] operator_entities``, default
    :data:`~kairo_guard.detect.pii.gate.OPERATOR_ENTITIES`), which reads a text of any
    length in overlapping windows (:data:`OPERATOR_WINDOW_CHARS`); else the strict gate
    (``[pii] entities``).
    """
    pii = settings.pii
    if not (pii.enabled if enabled is None else enabled):
        return None

    def build() -> Any:
        if not operator:
            return pii_gate.PiiGate(
                entities=pii.entities,
                thresholds=pii.thresholds,
                allow_list=pii.allow_list,
                model=pii.model,
                processes=pii.processes,
            )
        configured = pii.operator_entities
        entities = pii_gate.OPERATOR_ENTITIES if configured is None else tuple(configured)
        return pii_gate.PiiGate(
            entities=entities,
            thresholds=pii.thresholds,
            allow_list=pii.allow_list,
            model=pii.model,
            processes=pii.processes,
            window_chars=OPERATOR_WINDOW_CHARS,
        )

    return LazyPiiCheck(build)
