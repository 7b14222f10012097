"""kairo-guard: keep customer content out of shared model training.

Seal content with its tenant provenance, check records at training sinks (block,
filter or observe), and record every decision in a hash-chained audit log.
"""

from __future__ import annotations

import logging

from kairo_guard.anonymize.aggregator import AggregationReport, TelemetryAggregator
from kairo_guard.audit.log import AuditLog, AuditVerification, verify_audit
from kairo_guard.core.columnar import CANONICAL_FIELD, with_canonical
from kairo_guard.core.content import canonical_json, content_digest
from kairo_guard.core.context import current_tenant, tenant_context
from kairo_guard.core.exceptions import (
    AuditError,
    AuditIntegrityError,
    ConfigError,
    ContentError,
    ContentRefused,
    DatasetError,
    IndexLagging,
    IsolationViolation,
    KairoGuardError,
    KeyringError,
    PolicyError,
    RegistryError,
    SealError,
    StoreError,
    TokenRejected,
)
from kairo_guard.core.keys import KeyRing
from kairo_guard.core.policy import Decision, Policy, Rule, rule
from kairo_guard.core.report import CheckReport, Violation
from kairo_guard.core.seal import Label, SealCodec
from kairo_guard.core.signing import SignerKeys, VerifyKeys
from kairo_guard.core.sinks import Sink, make_sink
from kairo_guard.core.types import SEAL_FIELD, DataClass, Mode, Outcome, Sealed, SinkKind
from kairo_guard.detect.fingerprint import Fingerprinter, FingerprintIndex
from kairo_guard.guard import Guard
from kairo_guard.ingest.baggage import BaggageResolver
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.otel.baggage import (
    TenantTokenCodec,
    async_httpx_event_hook,
    bind_guard_context,
    guard_context_submit,
    httpx_event_hook,
)
from kairo_guard.otel.instrumentation import GuardTelemetry
from kairo_guard.otel.propagator import TenantBaggagePropagator
from kairo_guard.store.base import Agreement, DatasetInfo, ModelInfo, Store
from kairo_guard.store.postgres import PostgresStore
from kairo_guard.store.sqlite import SQLiteStore
from kairo_guard.tenancy.dataset_builder import DatasetBuilder
from kairo_guard.tenancy.datasets import VerifiedDataset
from kairo_guard.tenancy.erasure import ErasureReceipt
from kairo_guard.tenancy.manifest import Manifest
from kairo_guard.tenancy.retention import RetentionPolicy, SweepReport
from kairo_guard.workers import GuardForked, GuardSpec

__all__ = [
    "CANONICAL_FIELD",
    "SEAL_FIELD",
    "AggregationReport",
    "Agreement",
    "AuditError",
    "AuditIntegrityError",
    "AuditLog",
    "AuditVerification",
    "BaggageResolver",
    "CheckReport",
    "ConfigError",
    "ContentError",
    "ContentRefused",
    "DataClass",
    "DatasetBuilder",
    "DatasetError",
    "DatasetInfo",
    "Decision",
    "ErasureReceipt",
    "FingerprintIndex",
    "Fingerprinter",
    "Guard",
    "GuardForked",
    "GuardMiddleware",
    "GuardSpec",
    "GuardTelemetry",
    "IndexLagging",
    "IsolationViolation",
    "KairoGuardError",
    "KeyRing",
    "KeyringError",
    "Label",
    "Manifest",
    "Mode",
    "ModelInfo",
    "Outcome",
    "Policy",
    "PolicyError",
    "PostgresStore",
    "RegistryError",
    "RetentionPolicy",
    "Rule",
    "SQLiteStore",
    "SealCodec",
    "SealError",
    "Sealed",
    "SignerKeys",
    "Sink",
    "SinkKind",
    "Store",
    "StoreError",
    "SweepReport",
    "TelemetryAggregator",
    "TenantBaggagePropagator",
    "TenantTokenCodec",
    "TokenRejected",
    "VerifiedDataset",
    "VerifyKeys",
    "Violation",
    "async_httpx_event_hook",
    "bind_guard_context",
    "canonical_json",
    "content_digest",
    "current_tenant",
    "guard_context_submit",
    "httpx_event_hook",
    "make_sink",
    "rule",
    "tenant_context",
    "verify_audit",
    "with_canonical",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
