"""Collecting one tenant's records for a fine-tune dataset.

:class:`DatasetBuilder` decides every record with the same check a
``tenant-fine-tune`` sink of the tenant runs (so only the tenant's own verified,
unexpired customer content, and operator data the policy allows, is accepted; another
tenant's record is refused with ``tenant.cross-tenant``), spools the accepted ones,
and hands them to be published (:meth:`DatasetService.publish
<kairo_guard.tenancy.dataset_service.DatasetService.publish>`) only if *no* record was
refused.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

from kairo_guard.core.content import sealed_line
from kairo_guard.core.exceptions import IsolationViolation
from kairo_guard.core.jsonl import BadLine, parse_line
from kairo_guard.core.policy import Decision
from kairo_guard.core.report import CheckReport
from kairo_guard.core.seal import SealCodec
from kairo_guard.core.types import SEAL_FIELD, Outcome, TenantId, validate_tenant
from kairo_guard.enforce.check import SinkCheck
from kairo_guard.enforce.labels import split_record
from kairo_guard.tenancy.manifest import DatasetError, Manifest, MerkleRoot

_SPOOL_BYTES = 32 << 20
_CHUNK = 1 << 20

Publish = Callable[[TenantId, MerkleRoot, Path, Iterator[bytes]], Manifest]
"""Writes a tenant's accepted record lines (whose digests the tree holds) to a new
dataset directory and returns its signed manifest."""


class DatasetBuilder:
    """Collects one tenant's records and writes them as a signed dataset.

    Use :meth:`Guard.tenant_dataset <kairo_guard.guard.Guard.tenant_dataset>`; add
    records with :meth:`add` (or :meth:`add_line` for raw JSONL), then :meth:`write`
    to a new directory. A builder is used once.

    Args:
        tenant: whose dataset this is.
        run: the check of a ``tenant-fine-tune`` sink of ``tenant``, in ``filter`` mode.
        codec: reads the content digest of accepted seals.
        publish: writes the dataset when every record was accepted.

    Raises:
        ValueError: for an invalid tenant id.
    """

    def __init__(
        self, tenant: TenantId, run: SinkCheck, codec: SealCodec, publish: Publish
    ) -> None:
        self.tenant = validate_tenant(tenant)
        self._run = run
        self._codec = codec
        self._publish = publish
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
        self._tree = MerkleRoot()
        self._done = False
        self._reported = False

    def __enter__(self) -> DatasetBuilder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop what was collected (idempotent)."""
        self._done = True
        self._spool.close()

    def add(self, record: object, *, position: int | None = None) -> Decision:
        """Decide one record (a dict with its seal under ``_kairo``); keep it if allowed.

        ``position`` is where the record stands in its input (default: the count so far).
        """
        self._open()
        if not isinstance(record, Mapping):
            return self.refuse(
                "dataset.not-an-object",
                "dataset records are JSON objects with a seal",
                None,
                position,
            )
        content, seal = split_record(record)
        decision = self._run.decide_parts(content, seal, position=position)
        if decision.outcome is Outcome.ALLOW:
            seal = record.get(SEAL_FIELD)
            content = {k: v for k, v in record.items() if k != SEAL_FIELD}
            self._spool.write(sealed_line(content, str(seal)))
            self._tree.add(bytes.fromhex(self._codec.verify(str(seal))[1]))
        return decision

    def add_line(self, raw: bytes, *, position: int | None = None) -> Decision:
        """Decide one JSONL line (what :meth:`add` does, after parsing it strictly)."""
        self._open()
        value = parse_line(raw, exact_numbers=True)
        if isinstance(value, BadLine):
            return self.refuse(value.rule, value.reason, value.digest, position)
        return self.add(value, position=position)

    def refuse(
        self, rule: str, reason: str, digest: str | None, position: int | None = None
    ) -> Decision:
        """Count an input record that could not even be read as refused."""
        self._open()
        return self._run.block_unreadable(rule, reason, digest, position)

    def add_all(self, records: Iterable[object]) -> None:
        """Add every record of ``records``."""
        for record in records:
            self.add(record)

    def report(self) -> CheckReport:
        """Finish deciding and return the report (per-record reasons for refusals);
        no record can be added afterwards."""
        self._reported = True
        return self._run.finish()

    def _open(self) -> None:
        if self._done or self._reported:
            raise ValueError("this dataset builder was already reported, written or closed")

    def write(self, out: Path | str) -> Manifest:
        """Write ``records.jsonl`` and the signed ``manifest.json`` into a new directory,
        all or nothing: a failure at any step leaves no directory behind.

        Raises:
            IsolationViolation: if any record was refused (nothing is written).
            DatasetError: no records, no active fine-tune agreement, or ``out`` exists
                and is not an empty directory.
            StoreError, OSError: the dataset could not be recorded or written.
            AuditError: the build could not be audited; the dataset was recorded and
                stays complete (never a recorded dataset without its files).
        """
        if self._done:
            raise ValueError("this dataset builder was already written or closed")
        report = self.report()
        try:
            if report.blocked:
                raise IsolationViolation(report)
            if not report.total:
                raise DatasetError("dataset.empty", "a dataset needs at least one record")
            self._spool.seek(0)
            chunks = iter(lambda: self._spool.read(_CHUNK), b"")
            return self._publish(self.tenant, self._tree, Path(out), chunks)
        finally:
            self.close()
