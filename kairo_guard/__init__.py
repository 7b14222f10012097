"""kairo-guard: keep customer content out of shared model training.

Seal content with its tenant provenance, check records at training sinks (block,
filter or observe), and record every decision in a hash-chained audit log.
"""

from __future__ import annotations

import logging

from kairo_guard.audit import AuditLog, AuditVerification, verify_audit
from kairo_guard.baggage import (
    BaggageResolver,
    TenantTokenCodec,
    async_httpx_event_hook,
    bind_guard_context,
    guard_context_submit,
    httpx_event_hook,
)
from kairo_guard.baggage_propagator import TenantBaggagePropagator
from kairo_guard.content import canonical_json, content_digest
from kairo_guard.context import current_tenant, tenant_context
from kairo_guard.dataset_builder import DatasetBuilder
from kairo_guard.datasets import VerifiedDataset
from kairo_guard.erasure import ErasureReceipt
from kairo_guard.exceptions import (
    AuditError,
    AuditIntegrityError,
    ConfigError,
    ContentError,
    ContentRefused,
    DatasetError,
    IsolationViolation,
    KairoGuardError,
    KeyringError,
    PolicyError,
    RegistryError,
    SealError,
    StoreError,
    TokenRejected,
)
from kairo_guard.fingerprint import Fingerprinter, FingerprintIndex
from kairo_guard.guard import Guard
from kairo_guard.keys import KeyRing
from kairo_guard.manifest import Manifest
from kairo_guard.middleware import GuardMiddleware
from kairo_guard.otel import GuardTelemetry
from kairo_guard.policy import Decision, Policy, Rule, rule
from kairo_guard.report import CheckReport, Violation
from kairo_guard.retention import RetentionPolicy, SweepReport
from kairo_guard.seal import Label, SealCodec
from kairo_guard.sinks import Sink, make_sink
from kairo_guard.store import Agreement, DatasetInfo, ModelInfo, SQLiteStore, Store
from kairo_guard.telemetry import AggregationReport, TelemetryAggregator
from kairo_guard.types import SEAL_FIELD, DataClass, Mode, Outcome, Sealed, SinkKind

__all__ = [
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
    "GuardMiddleware",
    "GuardTelemetry",
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
    "RegistryError",
    "RetentionPolicy",
    "Rule",
    "SQLiteStore",
    "SealCodec",
    "SealError",
    "Sealed",
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
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
