"""Opening a state directory's audit log, anchored in the store under the directory's
name, which is pinned (signed) on first opening (part of the Guard's wiring,
:mod:`kairo_guard.assembly`)."""

from __future__ import annotations

import contextlib
import hmac
import os

from kairo_guard.audit.anchor import AuditAnchor
from kairo_guard.audit.log import AuditLog
from kairo_guard.config import Settings
from kairo_guard.config.settings import STATE_ID_FILE, read_state_pin, state_directory_id
from kairo_guard.core.anchor import AnchorStore
from kairo_guard.core.exceptions import AuditIntegrityError, ConfigError
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
    log = AuditLog(
        settings.home / AUDIT_DIR_NAME,
        keys.subkey(PURPOSE_AUDIT_HEAD),
        keys.signing_key_id,
        batch_size=limits.audit_batch_size,
        flush_interval=limits.audit_flush_ms / 1000,
        verify_keys=keys.subkeys(PURPOSE_AUDIT_HEAD),  # a head from before a rotation
        anchor=anchor,
    )
    try:  # the log opened: the directory keeps its name from now on, whatever the host
        pin_name(settings, keys)
    except Exception:
        with contextlib.suppress(Exception):  # the pin's error is the one to report
            log.close()
        raise
    return log


_PIN_CONTEXT = b"kairo-guard state-id\0"


def pin_name(settings: Settings, keys: KeyRing) -> None:
    """Check, or write, the state directory's pinned name (:data:`STATE_ID_FILE`).

    A pinned name in use (``KAIRO_GUARD_AUDIT_LOG_ID`` not naming the directory
    otherwise) must carry this deployment's signature (HMAC-SHA256 under an audit-head
    subkey of the ring): else whoever can write the directory could rename it, and a
    rolled-back log would open under a name the store has no anchor for. A directory
    not pinned yet and named by its host is pinned now, signed; a name given in the
    environment is not pinned. A pin signed with an older key of the ring is signed
    again with the current one (so the old key can leave the ring later).

    Raises:
        AuditIntegrityError: the pinned name's signature does not verify.
        ConfigError: the file is malformed or cannot be written.
    """
    home, name = settings.home, settings.audit_log_id
    pinned = read_state_pin(home)
    if pinned is not None:
        if pinned[0] != name:  # named in the environment: the pin is not in use
            return
        if not _signed(keys, name, pinned[1]):
            raise AuditIntegrityError(
                f"{home / STATE_ID_FILE}: the state directory's name is not signed by this "
                "deployment's keys (edited, or copied from elsewhere): refusing to open"
            )
        if pinned[1].startswith(f"{keys.signing_key_id}:"):
            return  # else signed before a key rotation: signed again with the new key
    elif name != state_directory_id(home):
        return
    kid = keys.signing_key_id
    mac = hmac.digest(keys.subkey(PURPOSE_AUDIT_HEAD, kid), _PIN_CONTEXT + name.encode(), "sha256")
    part = home / f".{STATE_ID_FILE}.{os.getpid()}"
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(f"{name} {kid}:{mac.hex()}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, home / STATE_ID_FILE)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        raise ConfigError(f"cannot pin the state directory's name in {home}: {exc}") from exc


def _signed(keys: KeyRing, name: str, signature: str) -> bool:
    kid, _, mac = signature.partition(":")
    if kid not in keys.keys:
        return False
    want = hmac.digest(keys.subkey(PURPOSE_AUDIT_HEAD, kid), _PIN_CONTEXT + name.encode(), "sha256")
    return hmac.compare_digest(want.hex(), mac)
