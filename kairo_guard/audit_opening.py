"""Opening a state directory's audit log, anchored in the store (part of the Guard's
wiring, :mod:`kairo_guard.assembly`)."""

from __future__ import annotations

from kairo_guard.audit.anchor import AuditAnchor
from kairo_guard.audit.log import AuditLog
from kairo_guard.config import Settings
from kairo_guard.core.anchor import AnchorStore
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD, KeyRing
from kairo_guard.otel.instrumentation import GuardTelemetry

AUDIT_DIR_NAME = "audit"
"""The audit log's directory in the state directory."""


def open_audit(
    settings: Settings,
    keys: KeyRing,
    store: AnchorStore | None = None,
    telemetry: GuardTelemetry | None = None,
) -> AuditLog:
    """Open the hash-chained audit log in the state directory, anchored in ``store``
    (and reported as gauges through ``telemetry``) when given.

    Raises:
        AuditError: the log cannot be opened or is locked by an incompatible writer.
        AuditIntegrityError: the log is behind its anchor, or its head does not verify.
    """
    limits = settings.limits
    anchor = None
    if store is not None:
        log_id = settings.audit_log_id
        report = telemetry.anchored if telemetry is not None else None
        failed = telemetry.anchor_failed if telemetry is not None else None
        anchor = AuditAnchor(
            store,
            log_id,
            observe=None if report is None else (lambda a: report(log_id, a.count, a.hash)),
            failed=None if failed is None else (lambda: failed(log_id)),
        )
    return AuditLog(
        settings.home / AUDIT_DIR_NAME,
        keys.subkey(PURPOSE_AUDIT_HEAD),
        keys.signing_key_id,
        batch_size=limits.audit_batch_size,
        flush_interval=limits.audit_flush_ms / 1000,
        verify_keys=keys.subkeys(PURPOSE_AUDIT_HEAD),  # a head from before a rotation
        anchor=anchor,
    )
