"""Erasure of a tenant ("account deletion"): remove its data, refuse its seals, sign a receipt.

:meth:`Erasure.erase` runs, in this order:

1. records the tenant's pseudonym as erased, so every seal of the tenant made up to
   now is refused at every sink (rule ``tenant.erased``) whatever happens next;
2. deletes the tenant's dataset directories and rows (:meth:`DatasetService.delete`);
3. marks the tenant's models for deletion (:meth:`ModelRegistry.mark_for_deletion`): they
   can no longer be served;
4. deletes the tenant's fingerprints, agreements, API keys, provenance rows and
   retention periods in one transaction, with deleted pages overwritten;
5. writes a receipt (JSON, HMAC-signed like the audit head, naming the tenant only by
   pseudonym) under ``<home>/erasures/`` and audits its SHA-256.

The audit log is hash-chained and is not rewritten: it never held raw tenant ids or
content, only pseudonyms and digests. Any failure raises before the receipt is written,
so an erasure never claims success it did not have; running it again finishes the job.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from kairo_guard.audit.log import AuditLog
from kairo_guard.core.keys import KeyRing
from kairo_guard.core.types import TenantId, validate_tenant
from kairo_guard.store.base import Store
from kairo_guard.tenancy.dataset_service import DatasetService
from kairo_guard.tenancy.models import ModelRegistry

RECEIPT_DIR_NAME = "erasures"
PURPOSE_ERASURE_RECEIPT = "erasure-receipt"
RECEIPT_KIND = "kairo-guard/erasure-receipt"


@dataclass(frozen=True)
class ErasureReceipt:
    """What an erasure removed, when, and for whom (by pseudonym), signed.

    ``removed`` counts rows or items per kind: ``fingerprints``, ``agreements``,
    ``api_keys``, ``provenance``, ``retention_overrides``, ``datasets``.
    """

    tenant: str
    """The tenant's pseudonym (the raw id is what was erased)."""
    erased_at: float
    removed: Mapping[str, int]
    models_marked_for_deletion: int
    key_id: str
    mac: str
    path: Path | None = None
    """Where the receipt was written in the state directory."""

    def body(self) -> dict[str, Any]:
        """Return the signed part of the receipt."""
        return {
            "kind": RECEIPT_KIND,
            "v": 1,
            "tenant": self.tenant,
            "erased_at": self.erased_at,
            "erased_at_iso": datetime.fromtimestamp(self.erased_at, UTC).isoformat(),
            "removed": dict(sorted(self.removed.items())),
            "models_marked_for_deletion": self.models_marked_for_deletion,
            "key_id": self.key_id,
        }

    def to_json(self) -> bytes:
        """Return the receipt document (the body and its ``mac``)."""
        return orjson.dumps({**self.body(), "mac": self.mac}, option=orjson.OPT_INDENT_2) + b"\n"

    def verify(self, keys: KeyRing) -> bool:
        """True if the receipt's MAC verifies under ``keys``."""
        if self.key_id not in keys.keys:
            return False
        return hmac.compare_digest(_mac(keys, self.key_id, self.body()), self.mac)

    @classmethod
    def load(cls, path: Path) -> ErasureReceipt:
        """Read a receipt written by :meth:`Erasure.erase` (not verified: see :meth:`verify`).

        Raises:
            ValueError: if the file is not a receipt.
            OSError: if it cannot be read.
        """
        doc = orjson.loads(path.read_bytes())
        if not isinstance(doc, dict) or doc.get("kind") != RECEIPT_KIND:
            raise ValueError(f"{path} is not an erasure receipt")
        try:
            return cls(
                tenant=str(doc["tenant"]),
                erased_at=float(doc["erased_at"]),
                removed={str(k): int(v) for k, v in doc["removed"].items()},
                models_marked_for_deletion=int(doc["models_marked_for_deletion"]),
                key_id=str(doc["key_id"]),
                mac=str(doc["mac"]),
                path=path,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{path}: malformed erasure receipt ({exc})") from exc


def _mac(keys: KeyRing, key_id: str, body: Mapping[str, Any]) -> str:
    key = keys.subkey(PURPOSE_ERASURE_RECEIPT, key_id)
    return hmac.new(key, orjson.dumps(body, option=orjson.OPT_SORT_KEYS), "sha256").hexdigest()


class Erasure:
    """Erases tenants (see the module docstring).

    Args:
        store: the state to erase from.
        keys: pseudonymizes the tenant and signs the receipt.
        audit: where the erasure is recorded (flushed before returning).
        clock: Unix-seconds clock.
        datasets: deletes the tenant's datasets.
        models: marks the tenant's models for deletion.
        receipts: the directory receipts are written to (``<home>/erasures``).
    """

    def __init__(
        self,
        *,
        store: Store,
        keys: KeyRing,
        audit: AuditLog,
        clock: Callable[[], float],
        datasets: DatasetService,
        models: ModelRegistry,
        receipts: Path,
        index_watermark: Callable[[], None] | None = None,
    ) -> None:
        self._index_watermark = index_watermark
        self._store = store
        self._keys = keys
        self._audit = audit
        self._clock = clock
        self._datasets = datasets
        self._models = models
        self._receipts = receipts

    def erase(self, tenant: TenantId, *, receipt_path: Path | None = None) -> ErasureReceipt:
        """Erase ``tenant`` and return the signed receipt.

        Args:
            tenant: the tenant id.
            receipt_path: also write the receipt here.

        Raises:
            ValueError: for an invalid tenant id.
            StoreError, DatasetError, OSError: a step failed; nothing claims success.
            IndexLagging: the ingestion spool could not be indexed in time.
        """
        validate_tenant(tenant)
        if self._index_watermark is not None:
            # bodies accepted before now are indexed first, then erased with the rest
            # (raises IndexLagging: nothing is erased, nothing claims it was)
            self._index_watermark()
        keys = self._keys
        pseudonym = keys.pseudonym(tenant)
        now = float(self._clock())  # a float, as the receipt is read back
        self._store.mark_erased(pseudonym, now)
        datasets = self._datasets.delete(tenant)
        models = self._models.mark_for_deletion(tenant)
        removed = {**self._store.erase_tenant(tenant), "datasets": datasets}
        key_id = keys.signing_key_id
        unsigned = ErasureReceipt(pseudonym, now, removed, models, key_id, mac="")
        mac = _mac(keys, key_id, unsigned.body())
        path = self._receipts / f"{pseudonym}.{int(now)}.json"
        receipt = ErasureReceipt(pseudonym, now, removed, models, key_id, mac, path)
        data = receipt.to_json()
        self._receipts.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(path, data)
        if receipt_path is not None:
            _write_private(receipt_path, data)
        self._audit.append(
            {
                "event": "tenant.erase",
                "tenant": pseudonym,
                "removed": dict(sorted(removed.items())),
                "models_marked_for_deletion": models,
                "receipt_sha256": hashlib.sha256(data).hexdigest(),
            }
        )
        self._audit.flush()
        return receipt


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
