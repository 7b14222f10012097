"""The store contract: what the guard must remember between processes, and its rows.

:class:`Store` is a Protocol made of three parts (agreements, API keys and
fingerprints here; :class:`DatasetStore`; :class:`TenantDataStore`). The embedded
default is :class:`~kairo_guard.store.sqlite.SQLiteStore`; other backends (PostgreSQL
for several replicas) implement the same methods. Every row type a method takes or
returns is defined here, so code above the store imports this module only.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kairo_guard.core.anchor import AnchorStore
from kairo_guard.core.types import DataClass, TenantId
from kairo_guard.store.coverage import CoverageStore

DEFAULT_SCOPE = "fine-tune"
"""The scope word an agreement needs to permit a tenant fine-tune."""
SCOPE_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,39}(,[a-z0-9][a-z0-9-]{0,39}){0,15}")
MODEL_ACTIVE = "active"
MODEL_PENDING_DELETION = "pending_deletion"
DATASET_ACTIVE = "active"
FINGERPRINTS_PAGE = 1 << 16
"""Rows :meth:`Store.fingerprints_since` returns at most, by default."""
TENANT_TABLES = ("fingerprints", "agreements", "api_keys", "provenance", "retention_overrides")
"""Tables with a ``tenant`` column that erasure empties of the tenant's rows."""


def scope_words(scope: str) -> frozenset[str]:
    """Return the words of an agreement scope (split on commas or spaces)."""
    return frozenset(scope.replace(",", " ").split())


@dataclass(frozen=True, slots=True)
class Agreement:
    """A tenant's data processing agreement that permits fine-tuning on its content."""

    id: str
    tenant: TenantId
    scope: str
    granted_at: float
    expires_at: float | None
    revoked_at: float | None
    reference: str

    def active(self, now: float) -> bool:
        """True if granted, not revoked, and not expired at ``now``."""
        return (
            self.revoked_at is None
            and self.granted_at <= now
            and (self.expires_at is None or now < self.expires_at)
        )

    def permits_fine_tune(self, now: float) -> bool:
        """True if active at ``now`` and its scope covers fine-tuning."""
        return self.active(now) and DEFAULT_SCOPE in scope_words(self.scope)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A tenant's API key as stored: only its public id and a slow hash of the secret."""

    key_id: str
    tenant: TenantId
    kdf: str
    """How ``hash`` was derived: ``bcrypt$12`` (its salt in the hash, ``salt`` empty), or
    ``scrypt$16384$8$1`` for keys made before bcrypt."""
    salt: bytes
    hash: bytes
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """A tenant dataset as recorded: where it lives and which manifest is current."""

    id: str
    tenant: TenantId
    path: Path
    record_count: int
    created_at: float
    agreement_id: str
    manifest_digest: str
    """SHA-256 of the current ``manifest.json`` document (changes when pruned)."""
    status: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A registered model: its owner tenant (None if shared) and where it came from.

    A model marked for deletion keeps only its owner's pseudonym in ``owner``.
    """

    model_id: str
    owner: TenantId | None
    dataset: str | None
    """The dataset id a tenant model was trained on (None for shared models)."""
    registered_at: float
    status: str
    """``active`` or ``pending_deletion``."""
    manifest_digest: str | None = None
    sink: str | None = None
    """For shared models: the shared sink (``name`` and kind) it was registered from."""


class LabelFields(Protocol):
    """What a provenance row takes from a label (:class:`~kairo_guard.core.seal.Label`)."""

    @property
    def digest(self) -> str: ...
    @property
    def data_class(self) -> DataClass: ...
    @property
    def source(self) -> str: ...
    @property
    def created_at(self) -> int: ...
    @property
    def expires_at(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ProvenanceRow:
    """One sealed piece of a tenant's content, by digest: never the content itself."""

    digest: str
    tenant: TenantId
    data_class: str
    source: str
    created_at: int
    expires_at: int | None

    @classmethod
    def of_label(cls, label: LabelFields, tenant: TenantId) -> ProvenanceRow:
        """The row of a tenant's verified label."""
        return cls(
            label.digest,
            tenant,
            label.data_class.value,
            label.source,
            label.created_at,
            label.expires_at,
        )


@dataclass(frozen=True)
class ShardRow:
    """A vetted shard as stored: its signed manifest and what the manifest covers
    (:mod:`kairo_guard.core.shard`). The store is not trusted for integrity: a reader
    verifies the signature, the Merkle root over ``digests`` and the hash of
    ``fingerprints`` before it believes any of it."""

    shard_id: str
    manifest: bytes
    """The manifest's canonical bytes (what was signed)."""
    signature: bytes
    digests: bytes
    """The records' content digests, 32 bytes each, in order."""
    fingerprints: bytes
    """The shard's fingerprint table (:mod:`kairo_guard.enforce.shards`)."""


class ShardStore(Protocol):
    """Vetted shards of operator data and anonymized telemetry."""

    def add_shard(self, row: ShardRow) -> None:
        """Keep a shard (idempotent: the id is the manifest's hash)."""
        ...

    def get_shard(self, shard_id: str) -> ShardRow | None:
        """Return the shard of that id, or None."""
        ...

    def shard_ids(self) -> list[str]:
        """The ids of every shard kept, oldest first."""
        ...

    def fingerprint_position(self) -> int:
        """The position of the last fingerprint indexed (0: none), as
        :meth:`Store.fingerprints_since` counts: what a shard's watermark records."""
        ...


class DatasetStore(Protocol):
    """Datasets and models: the store methods behind the dataset builder and registry."""

    def add_dataset(self, info: DatasetInfo) -> None:
        """Record a new dataset (its id must be new)."""
        ...

    def update_dataset(self, dataset_id: str, *, record_count: int, manifest_digest: str) -> None:
        """Point a dataset at a new manifest (after pruning)."""
        ...

    def list_datasets(self, tenant: TenantId | None = None) -> list[DatasetInfo]:
        """Return datasets, oldest first, optionally for one tenant."""
        ...

    def get_dataset(self, dataset_id: str) -> DatasetInfo | None:
        """Return one dataset, or None."""
        ...

    def delete_dataset_rows(self, tenant: TenantId) -> int:
        """Remove every dataset row of ``tenant``; return how many went."""
        ...

    def add_model(self, info: ModelInfo) -> None:
        """Register a model; raises StoreError if the model id is taken."""
        ...

    def get_model(self, model_id: str) -> ModelInfo | None:
        """Return one model, or None."""
        ...

    def list_models(self, owners: tuple[str, ...] | None = None) -> list[ModelInfo]:
        """Return models, oldest first, optionally only those owned by one of ``owners``."""
        ...

    def mark_models_for_deletion(self, tenant: TenantId, replacement: str) -> int:
        """Mark the tenant's active models ``pending_deletion``, replacing the owner, and
        the tenant id wherever it occurs in a model's name, with ``replacement`` (its
        pseudonym); return how many were marked."""
        ...


class TenantDataStore(Protocol):
    """Provenance rows, retention periods and erased tenants."""

    def add_provenance(self, rows: Iterable[ProvenanceRow]) -> None:
        """Record provenance rows."""
        ...

    def record_ingested(
        self, fingerprints: Iterable[tuple[int, TenantId]], provenance: Iterable[ProvenanceRow]
    ) -> None:
        """Add ``(fingerprint, tenant)`` pairs (idempotent) and provenance rows in one
        transaction: the spool indexer's batch."""
        ...

    def list_provenance(self, tenant: TenantId) -> list[ProvenanceRow]:
        """Return the tenant's provenance rows, oldest first."""
        ...

    def sweep_provenance(self, now: float, *, dry_run: bool) -> dict[tuple[str, str], int]:
        """Delete rows expired at ``now`` (unless ``dry_run``); count them by (tenant, class)."""
        ...

    def set_retention(self, tenant: TenantId, scope: str, seconds: int | None) -> None:
        """Set (or with None remove) a tenant's retention period for ``scope``."""
        ...

    def list_retention(self) -> dict[TenantId, dict[str, int]]:
        """Return every tenant's retention periods: tenant -> scope -> seconds."""
        ...

    def mark_erased(self, pseudonym: str, erased_at: float) -> None:
        """Remember that the tenant with ``pseudonym`` was erased at ``erased_at``."""
        ...

    def erased_tenants(self) -> dict[str, float]:
        """Return pseudonym -> erasure time of every erased tenant."""
        ...

    def erase_tenant(self, tenant: TenantId) -> dict[str, int]:
        """Delete the tenant's rows from :data:`TENANT_TABLES` in one transaction.

        Returns:
            Rows deleted per table.
        """
        ...


class Store(DatasetStore, TenantDataStore, ShardStore, AnchorStore, CoverageStore, Protocol):
    """Persistent state the guard reads on its decision path.

    Implementations must be safe to share between threads and raise
    :class:`~kairo_guard.core.exceptions.StoreError` (never anything else) on failure.
    """

    def grant_agreement(
        self,
        tenant: TenantId,
        *,
        now: float,
        expires_at: float | None,
        reference: str = "",
        scope: str = DEFAULT_SCOPE,
        valid_for: float | None = None,
    ) -> tuple[Agreement, bool]:
        """Record an active agreement for ``tenant``; return it and whether it is new.

        ``valid_for`` (seconds, instead of ``expires_at``) makes it expire that long
        after ``now``. A non-empty ``reference`` names one agreement: while an
        agreement of the tenant with that reference is active, granting it again with
        the same scope words and expiry returns that agreement (``False``),
        atomically; with ``valid_for``, the same expiry is the one that lies
        ``valid_for`` after the existing agreement's own grant (so a repeated
        "for 365 days" is the same term, whenever it is repeated).

        Raises:
            ValueError: invalid tenant or scope, an expiry not after ``now``, both
                ``expires_at`` and ``valid_for``, or an active agreement under the same
                reference with another scope or expiry.
        """
        ...

    def revoke_agreements(self, tenant: TenantId, *, now: float, agreement_id: str | None) -> int:
        """Revoke one agreement (or all of the tenant's); return how many were revoked."""
        ...

    def list_agreements(self, tenant: TenantId | None = None) -> list[Agreement]:
        """Return agreements, oldest first, optionally for one tenant."""
        ...

    def add_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new API key record."""
        ...

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """Return the record of an API key id, revoked or not, or None."""
        ...

    def tenant_ids(self) -> frozenset[TenantId]:
        """The tenants this store knows: every tenant that was given an API key (revoked
        or not) and has not been erased (erasure deletes its keys)."""
        ...

    def revoke_api_keys(self, tenant: TenantId, *, now: float, key_id: str | None) -> int:
        """Revoke one or all of a tenant's API keys; return how many were revoked
        (and count up :attr:`key_generation`)."""
        ...

    @property
    def key_generation(self) -> int:
        """Counts revocations and erasures made through this store object: verifiers in
        this process drop what they cached at once; other processes read records again
        within a second (:mod:`kairo_guard.ingest.apikeys`)."""
        ...

    def add_fingerprints(self, tenant: TenantId, fingerprints: Iterable[int]) -> None:
        """Index content fingerprints as ``tenant``'s (idempotent)."""
        ...

    def claim_fingerprint_scheme(self, scheme: str) -> str | None:
        """Record ``scheme`` as the scheme of the stored fingerprints if none is recorded
        and none are stored; return the scheme the stored fingerprints were made under
        (``scheme`` itself after a claim), or None for fingerprints of an unrecorded
        scheme (an index older than the record). One transaction."""
        ...

    def rebind_fingerprint_scheme(self, old: str, new: str) -> str:
        """Replace the recorded scheme ``old`` by ``new`` (a store recorded before the
        scheme named its key: the first process after the upgrade binds its own); return
        the scheme recorded afterwards. One transaction."""
        ...

    def match_fingerprints(self, fingerprints: Collection[int]) -> dict[int, frozenset[TenantId]]:
        """Return, for each given fingerprint that is indexed, the tenants it belongs to."""
        ...

    def fingerprints_since(
        self, after: int, limit: int = FINGERPRINTS_PAGE
    ) -> tuple[list[int], int]:
        """Return up to ``limit`` fingerprints indexed after position ``after`` (0: from
        the first), oldest first, and the position of the last one returned (``after``
        when none): pass it back to read on.

        A fingerprint indexed for several tenants may come once per tenant. Positions
        only grow: a fingerprint committed after a call comes at a position past every
        one that call returned, and none is reused after deletes (a reader holding a
        position misses nothing added later). Deleted fingerprints are not reported:
        a reader's copy only over-includes, and must be confirmed against
        :meth:`match_fingerprints`.
        """
        ...

    def delete_fingerprints(self, tenant: TenantId) -> int:
        """Remove every fingerprint of ``tenant``; return how many rows went."""
        ...

    def iter_fingerprints(self) -> Iterator[tuple[int, TenantId]]:
        """Yield every indexed (fingerprint, tenant) pair (for exports)."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...
