"""Test helpers: a guard on a fresh state directory, and seals minted without checks.

This module lives with the tests on purpose: it is not part of the wheel.

:func:`mint_unchecked` makes permitting seals (operator data, anonymized telemetry)
without the checks that normally justify them: it exists so that tests of training code
can feed a shared sink records that pass. It needs the guard's key, like any minting,
and every seal it makes is written to the audit log as ``"event": "seal.unchecked"``,
so its use in production would be on the record.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from loopback import running_server

from kairo_guard.core.content import content_digest
from kairo_guard.core.keys import KeyRing
from kairo_guard.core.seal import Label
from kairo_guard.core.signing import SignerKeys
from kairo_guard.core.types import SEAL_FIELD, DataClass, TenantId
from kairo_guard.guard import Guard
from kairo_guard.store.keyfile import SIGNER_FILE_NAME, write_signer_file

__all__ = [
    "EVERY_TENANT",
    "add_signer",
    "make_guard",
    "mint_unchecked",
    "register_tenants",
    "running_server",
    "sealed_record",
    "state_store_env",
]


class _EveryTenant(Collection[TenantId]):
    """Stands for "every well-formed tenant id exists" in aggregator tests about other
    rules (the tests of the existence rule give the store's tenants)."""

    def __contains__(self, tenant: object) -> bool:
        return True

    def __iter__(self) -> Iterator[TenantId]:
        return iter(())

    def __len__(self) -> int:
        return 0


EVERY_TENANT: Collection[TenantId] = _EveryTenant()


def register_tenants(guard: Guard, tenants: Iterable[TenantId]) -> None:
    """Make ``tenants`` exist in the guard's store (each gets an API key)."""
    from kairo_guard.ingest.apikeys import new_api_key

    for tenant in tenants:
        new_api_key(guard.store, tenant)


UNCHECKED = "0" * 64
"""The policy version of shards minted without checks: no guard's policy has it."""


def make_guard(home: Path, *, ring: KeyRing | None = None, **kwargs: Any) -> Guard:
    """Return a Guard on a fresh state directory with a fresh key (or ``ring``) and a
    signing key for vetting (:func:`add_signer`; or ``signer``, None for none). In the
    PostgreSQL pass its store is a schema of its own (:func:`state_store_env`)."""
    kwargs["env"] = {**state_store_env(home), **kwargs.get("env", {})}
    if "signer" not in kwargs:
        add_signer(home)
    return Guard(home=home, key=ring or KeyRing.generate(), **kwargs)


PG_PASS = "KG_TEST_STORE"
"""``KG_TEST_STORE=postgresql``: the suite's guards and CLI runs keep their state in
PostgreSQL (``make test`` runs every test directory that opens a store once more so)."""
PG_SCHEMAS: set[str] = set()
"""Schemas made for this run's state directories (dropped at the end of the session)."""


def state_store_env(home: Path | str) -> dict[str, str]:
    """The store of state directory ``home``: nothing (SQLite in it), or in the
    PostgreSQL pass ``KAIRO_GUARD_DB_URL`` of a schema of its own, made here."""
    if os.environ.get(PG_PASS) != "postgresql":
        return {}
    from store_backends import pg_admin, schema_url

    schema = "kg_h_" + hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:20]
    if schema not in PG_SCHEMAS:
        with pg_admin() as admin:
            admin.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        PG_SCHEMAS.add(schema)
    return {"KAIRO_GUARD_DB_URL": schema_url(schema)}


def add_signer(home: Path | str) -> None:
    """Give the state directory a signing key for vetting (``signer.json``), unless it
    has one: every process on it (the CLI, examples) then vets with the same key."""
    path = Path(home) / SIGNER_FILE_NAME
    if not path.exists():
        write_signer_file(path, SignerKeys.generate())


def mint_unchecked(
    guard: Guard,
    content: object,
    *,
    data_class: DataClass | str,
    tenant: TenantId | None = None,
    source: str = "test",
    created_at: int | None = None,
    expires_at: int | None = None,
) -> str:
    """Return a seal of any class for ``content``, skipping the minting checks.

    A permitting class is a shard of one signed by the guard's signer, vetted under no
    policy at index position 0: shared sinks check its record in full, as they would
    any record vetted under another policy.
    """
    cls = DataClass(data_class)
    created = int(guard.clock() if created_at is None else created_at)
    if not cls.restricts:
        digest = content_digest(content)
        guard.audit.append(
            {"event": "seal.unchecked", "class": cls.value, "digest": digest, "source": source}
        )
        empty = np.empty(0, dtype=np.int64)
        return guard.vetting.writer.write(
            cls, source, [digest], [empty], watermark=0, policy=UNCHECKED,
            created_at=created, expires_at=expires_at,
        )[0]  # fmt: skip
    label = Label.create(
        tenant=tenant,
        data_class=cls,
        source=source,
        created_at=created,
        expires_at=expires_at,
        digest=content_digest(content),
    )
    guard.audit.append(
        {"event": "seal.unchecked", "class": cls.value, "digest": label.digest, "source": source}
    )
    return guard.codec.seal(label)


def sealed_record(guard: Guard, record: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Return ``record`` with a seal from :func:`mint_unchecked` under ``_kairo``."""
    body = {k: v for k, v in record.items() if k != SEAL_FIELD}
    return {**body, SEAL_FIELD: mint_unchecked(guard, body, **kwargs)}
