"""Building the guard's parts from settings: key ring, store, audit log, index, PII gate.

The :class:`~kairo_guard.guard.Guard` calls these once, at construction; each returns a
ready collaborator or raises the error that names what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kairo_guard.audit.log import AuditLog
from kairo_guard.config import Settings
from kairo_guard.core.exceptions import ConfigError
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD, PURPOSE_FINGERPRINT, KeyRing, load_key_ring
from kairo_guard.detect.fingerprint import Fingerprinter, FingerprintIndex
from kairo_guard.detect.pii.check import LazyPiiCheck
from kairo_guard.store.base import Store
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore

AUDIT_DIR_NAME = "audit"
"""The audit log's folder inside the state directory."""


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


def open_store(settings: Settings) -> Store:
    """Open the state store the settings name (SQLite in the state directory by default).

    Raises:
        ConfigError: a database URL this version does not support.
        StoreError: the store cannot be opened.
    """
    url = settings.db_url
    if url and not url.startswith("sqlite:"):
        raise ConfigError(
            f"unsupported KAIRO_GUARD_DB_URL {url!r}: "
            "this version supports sqlite:///PATH (PostgreSQL support is planned)"
        )
    path = Path(url.removeprefix("sqlite:///")) if url else settings.home / DB_FILE_NAME
    return SQLiteStore(path)


def open_audit(settings: Settings, keys: KeyRing) -> AuditLog:
    """Open the hash-chained audit log in the state directory.

    Raises:
        AuditError: the log cannot be opened or is locked by an incompatible writer.
    """
    limits = settings.limits
    return AuditLog(
        settings.home / AUDIT_DIR_NAME,
        keys.subkey(PURPOSE_AUDIT_HEAD),
        keys.signing_key_id,
        batch_size=limits.audit_batch_size,
        flush_interval=limits.audit_flush_ms / 1000,
    )


def fingerprint_index(settings: Settings, store: Store, keys: KeyRing) -> FingerprintIndex:
    """Return the fingerprint index over ``store`` with the configured thresholds."""
    thresholds = settings.fingerprints
    # Keyed by the pseudonym key, which stays fixed across rotations, so the index
    # stays valid when the signing key changes.
    fingerprinter = Fingerprinter(keys.subkey(PURPOSE_FINGERPRINT, keys.pseudonym_key_id))
    return FingerprintIndex(
        store,
        fingerprinter,
        min_shared=thresholds.min_shared,
        min_fraction=thresholds.min_fraction,
        boilerplate_tenants=thresholds.boilerplate_tenants,
    )


def pii_check(settings: Settings, enabled: bool | None) -> LazyPiiCheck | None:
    """Return the PII gate as a lazily built check, or None when it is off.

    ``enabled`` overrides the config's ``[pii] enabled``. The gate (spaCy) loads on
    first use; if it cannot, every record that needs it is blocked.
    """
    pii = settings.pii
    if not (pii.enabled if enabled is None else enabled):
        return None

    def build() -> Any:
        from kairo_guard.detect.pii.gate import PiiGate

        return PiiGate(
            entities=pii.entities,
            thresholds=pii.thresholds,
            allow_list=pii.allow_list,
            model=pii.model,
            processes=pii.processes,
        )

    return LazyPiiCheck(build)
