"""Writing tenant datasets: the builder, pruning for retention, deletion for erasure.

:class:`DatasetBuilder` decides every record with the same check a
``tenant-fine-tune`` sink of the tenant runs (so only the tenant's own verified,
unexpired customer content, and operator data the policy allows, is accepted; another
tenant's record is refused with ``tenant.cross-tenant``), and writes a dataset only if
*no* record was refused and the tenant holds an active fine-tune agreement.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from kairo_guard.core.content import sealed_line
from kairo_guard.core.exceptions import ContentError, IsolationViolation, SealError
from kairo_guard.core.jsonl import BadLine, parse_line
from kairo_guard.core.policy import POLICY_VERSION, Decision
from kairo_guard.core.report import CheckReport
from kairo_guard.core.seal import Label
from kairo_guard.core.sinks import make_sink
from kairo_guard.core.types import SEAL_FIELD, Mode, Outcome, SinkKind, TenantId, validate_tenant
from kairo_guard.enforce.check import split_record
from kairo_guard.store.datasets import DATASET_ACTIVE
from kairo_guard.store.sqlite import DatasetInfo
from kairo_guard.tenancy.datasets import fine_tune_agreement, open_dataset
from kairo_guard.tenancy.manifest import (
    MANIFEST_FILE,
    RECORDS_FILE,
    DatasetError,
    Manifest,
    MerkleRoot,
    policy_fingerprint,
    sign_manifest,
)

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

_SPOOL_BYTES = 32 << 20


class DatasetBuilder:
    """Collects one tenant's records and writes them as a signed dataset.

    Use :meth:`Guard.tenant_dataset`; add records with :meth:`add` (or :meth:`add_line`
    for raw JSONL), then :meth:`write` to a new directory. A builder is used once.
    """

    def __init__(self, guard: Guard, tenant: TenantId) -> None:
        self._guard = guard
        self.tenant = validate_tenant(tenant)
        sink = make_sink(f"dataset-build:{tenant}", SinkKind.TENANT_FINE_TUNE, tenant=tenant)
        self._run = guard.start_check(sink, mode=Mode.FILTER)
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
            self._tree.add(bytes.fromhex(label_digest(self._guard, str(seal))))
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
        """Write ``records.jsonl`` and the signed ``manifest.json`` into a new directory.

        Raises:
            IsolationViolation: if any record was refused (nothing is written).
            DatasetError: no records, no active fine-tune agreement, or ``out`` exists
                and is not an empty directory.
        """
        if self._done:
            raise ValueError("this dataset builder was already written or closed")
        report = self.report()
        try:
            if report.blocked:
                raise IsolationViolation(report)
            if not report.total:
                raise DatasetError("dataset.empty", "a dataset needs at least one record")
            agreement = fine_tune_agreement(self._guard, self.tenant)
            if agreement is None:
                raise DatasetError(
                    "agreement.inactive", "the tenant has no active fine-tune agreement"
                )
            path = _new_dir(Path(out))
            self._spool.seek(0)
            _write_atomic(path / RECORDS_FILE, iter(lambda: self._spool.read(1 << 20), b""))
            manifest = self._sign(agreement.id, path)
        finally:
            self.close()
        return manifest

    def _sign(self, agreement_id: str, path: Path) -> Manifest:
        guard = self._guard
        manifest = new_manifest(
            guard,
            dataset_id=f"ds_{uuid.uuid4().hex[:20]}",
            tenant=self.tenant,
            tree=self._tree,
            agreement_id=agreement_id,
            supersedes=None,
        )
        _write_atomic(path / MANIFEST_FILE, (manifest.to_json(),))
        guard.store.add_dataset(
            DatasetInfo(
                id=manifest.dataset_id,
                tenant=self.tenant,
                path=path.resolve(),
                record_count=manifest.record_count,
                created_at=manifest.created_at,
                agreement_id=agreement_id,
                manifest_digest=manifest.digest,
                status=DATASET_ACTIVE,
            )
        )
        guard.audit.append(
            {
                "event": "dataset.build",
                "dataset": manifest.dataset_id,
                "tenant": guard.keys.pseudonym(self.tenant),
                "records": manifest.record_count,
                "merkle_root": manifest.merkle_root,
                "agreement": agreement_id,
                "manifest": manifest.digest,
            }
        )
        return manifest


def label_digest(guard: Guard, seal: str) -> str:
    """Return the content digest a (verified) seal binds."""
    return guard.codec.verify(seal)[1]


def new_manifest(
    guard: Guard,
    *,
    dataset_id: str,
    tenant: TenantId,
    tree: MerkleRoot,
    agreement_id: str,
    supersedes: str | None,
) -> Manifest:
    """Sign a manifest for records whose digests ``tree`` holds, under the current policy."""
    return sign_manifest(
        guard.keys,
        dataset_id=dataset_id,
        tenant=tenant,
        record_count=tree.count,
        merkle_root=tree.hexdigest(),
        policy_version=POLICY_VERSION,
        policy_fingerprint=policy_fingerprint(guard.policy),
        agreement_id=agreement_id,
        created_at=int(guard.clock()),
        supersedes=supersedes,
    )


def _new_dir(path: Path) -> Path:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DatasetError("dataset.exists", f"{path} exists and is not an empty directory")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _stage(path: Path, chunks: Iterable[bytes]) -> Path:
    """Write ``chunks`` to a synced temporary file beside ``path``; return its path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def _write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """Write a file atomically (temporary file in the same directory, then rename)."""
    os.replace(_stage(path, chunks), path)


def prune_dataset(
    guard: Guard, dataset_id: str, keep: Callable[[Label], bool], *, reason: str
) -> tuple[int, int]:
    """Keep only the records whose label ``keep`` accepts; see :meth:`Guard.prune_dataset`."""
    info = guard.store.get_dataset(dataset_id)
    if info is None:
        raise DatasetError("dataset.unknown", f"no dataset {dataset_id!r}")
    dataset = open_dataset(guard, info.path)
    old = dataset.manifest
    if old.dataset_id != dataset_id or old.digest != info.manifest_digest:
        raise DatasetError("dataset.superseded", "the directory holds another manifest")
    tree, removed = MerkleRoot(), [0]

    def kept_lines() -> Iterator[bytes]:
        for _, line, digest, seal in dataset.verified_lines():
            try:
                kept = seal is not None and keep(guard.codec.open(seal))
            except (SealError, ContentError):
                kept = False  # a record whose label cannot be read is not kept
            if kept:
                tree.add(digest)
                yield line + b"\n"
            else:
                removed[0] += 1

    staged = [_stage(info.path / RECORDS_FILE, kept_lines())]
    try:
        manifest = new_manifest(
            guard,
            dataset_id=dataset_id,
            tenant=old.tenant,
            tree=tree,
            agreement_id=old.agreement_id,
            supersedes=old.digest,
        )
        staged.append(_stage(info.path / MANIFEST_FILE, (manifest.to_json(),)))
        # records first: a crash between the renames leaves a dataset that fails closed
        os.replace(staged[0], info.path / RECORDS_FILE)
        os.replace(staged[1], info.path / MANIFEST_FILE)
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
    guard.store.update_dataset(
        dataset_id, record_count=manifest.record_count, manifest_digest=manifest.digest
    )
    guard.audit.append(
        {
            "event": "dataset.prune",
            "dataset": dataset_id,
            "kept": tree.count,
            "removed": removed[0],
            "reason": reason,
            "manifest": manifest.digest,
            "supersedes": old.digest,
        }
    )
    return tree.count, removed[0]


def _dataset_files(path: Path) -> list[Path]:
    ours = (RECORDS_FILE, MANIFEST_FILE)
    try:
        return [
            p
            for p in path.iterdir()
            if p.name in ours or any(p.name.startswith(f".{name}.") for name in ours)
        ]
    except FileNotFoundError:
        return []


def delete_datasets(guard: Guard, tenant: TenantId) -> int:
    """Delete the tenant's dataset files and rows; see :meth:`Guard.delete_datasets`."""
    infos = guard.store.list_datasets(validate_tenant(tenant))
    for info in infos:
        for file in _dataset_files(info.path):
            file.unlink(missing_ok=True)
        try:
            info.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            pass  # the directory holds files that are not the dataset's: left in place
    rows = guard.store.delete_dataset_rows(tenant)
    guard.audit.append(
        {
            "event": "datasets.delete",
            "datasets": rows,
            "records": sum(info.record_count for info in infos),
        }
    )
    return rows
