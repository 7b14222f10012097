"""Tenant datasets as a service: build, open, list, prune (retention), delete (erasure).

How a dataset meets a sink is :mod:`kairo_guard.tenancy.dataset_admission`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from kairo_guard.core.exceptions import ContentError, SealError
from kairo_guard.core.seal import Label, SealCodec
from kairo_guard.core.sinks import make_sink
from kairo_guard.core.types import AuditAppender, Mode, SinkKind, TenantId, validate_tenant
from kairo_guard.enforce.service import SinkChecks
from kairo_guard.store.base import DATASET_ACTIVE, DatasetInfo, Store
from kairo_guard.tenancy.agreements import Agreements
from kairo_guard.tenancy.dataset_builder import DatasetBuilder
from kairo_guard.tenancy.dataset_files import (
    remove_dataset_files,
    stage_file,
    staged_directory,
    write_file,
)
from kairo_guard.tenancy.datasets import VerifiedDataset, open_dataset
from kairo_guard.tenancy.manifest import (
    MANIFEST_FILE,
    RECORDS_FILE,
    DatasetError,
    Manifest,
    ManifestSigner,
    MerkleRoot,
)


class DatasetService:
    """Tenant fine-tune datasets (see the module docstring).

    Args:
        store: records datasets and agreements.
        audit: where builds, prunes and deletions are recorded.
        pseudonym: tenant id -> keyed pseudonym.
        codec: opens the records' seals.
        signer: signs and verifies manifests.
        agreements: which agreement permits a tenant's fine-tune.
        checks: starts the per-record checks.
        max_record_bytes: the longest record line read.
    """

    def __init__(
        self,
        *,
        store: Store,
        audit: AuditAppender,
        pseudonym: Callable[[TenantId], str],
        codec: SealCodec,
        signer: ManifestSigner,
        agreements: Agreements,
        checks: SinkChecks,
        max_record_bytes: int,
    ) -> None:
        self._store = store
        self._audit = audit
        self._pseudonym = pseudonym
        self._codec = codec
        self._signer = signer
        self._agreements = agreements
        self._checks = checks
        self._max_bytes = max_record_bytes

    # -- building -------------------------------------------------------------------

    def builder(self, tenant: TenantId) -> DatasetBuilder:
        """Return a builder of ``tenant``'s dataset (a signed manifest on write).

        Raises:
            ValueError: for an invalid tenant id.
        """
        sink = make_sink(
            f"dataset-build:{validate_tenant(tenant)}", SinkKind.TENANT_FINE_TUNE, tenant=tenant
        )
        run = self._checks.start(sink, mode=Mode.FILTER)
        return DatasetBuilder(tenant, run, self._codec, self.publish)

    def publish(
        self, tenant: TenantId, tree: MerkleRoot, out: Path, chunks: Iterator[bytes]
    ) -> Manifest:
        """Write accepted record lines as a new signed dataset at ``out``, all or nothing.

        Raises:
            DatasetError: no active fine-tune agreement, or ``out`` is taken.
            StoreError, OSError: it could not be recorded or written (nothing is left).
            AuditError: it was recorded but could not be audited (it stays complete).
        """
        agreement = self._agreements.for_fine_tune(tenant)
        if agreement is None:
            raise DatasetError("agreement.inactive", "the tenant has no active fine-tune agreement")
        manifest = self._signer.sign(
            dataset_id=f"ds_{uuid.uuid4().hex[:20]}",
            tenant=tenant,
            tree=tree,
            agreement_id=agreement.id,
            supersedes=None,
        )
        existed = out.is_dir()
        with staged_directory(out) as staging:
            write_file(staging / RECORDS_FILE, chunks)
            write_file(staging / MANIFEST_FILE, (manifest.to_json(),))
        try:
            self._record(manifest, out)
        except BaseException:
            remove_dataset_files(out)  # not recorded: not a dataset
            if existed:  # the empty directory the caller gave, as it was
                out.mkdir(mode=0o700, exist_ok=True)
            raise
        # Recorded, the dataset is complete; an audit failure is raised but never
        # removes its files (a row without files would stop every retention sweep).
        self._audit.append(
            {
                "event": "dataset.build",
                "dataset": manifest.dataset_id,
                "tenant": self._pseudonym(manifest.tenant),
                "records": manifest.record_count,
                "merkle_root": manifest.merkle_root,
                "agreement": manifest.agreement_id,
                "manifest": manifest.digest,
            }
        )
        return manifest

    def _record(self, manifest: Manifest, path: Path) -> None:
        info = DatasetInfo(
            id=manifest.dataset_id,
            tenant=manifest.tenant,
            path=path.resolve(),
            record_count=manifest.record_count,
            created_at=manifest.created_at,
            agreement_id=manifest.agreement_id,
            manifest_digest=manifest.digest,
            status=DATASET_ACTIVE,
        )
        self._store.add_dataset(info)

    # -- opening ------------------------------------------------------------------------

    def open(self, path: Path | str) -> VerifiedDataset:
        """Verify a dataset directory against its manifest; see :func:`open_dataset`."""
        return open_dataset(path, self._signer, self._max_bytes)

    def list_datasets(self, tenant: TenantId | None = None) -> list[DatasetInfo]:
        """Return recorded datasets, optionally one tenant's."""
        return self._store.list_datasets(tenant)

    # -- pruning and deleting -------------------------------------------------------------

    def prune(
        self, dataset_id: str, keep: Callable[[Label], bool], *, reason: str
    ) -> tuple[int, int]:
        """Keep only the records whose label ``keep`` accepts; re-sign the manifest (its
        ``supersedes`` names the old one); audited. Returns ``(kept, removed)``.

        Raises:
            DatasetError: unknown dataset, or its files do not verify.
        """
        info = self._store.get_dataset(dataset_id)
        if info is None:
            raise DatasetError("dataset.unknown", f"no dataset {dataset_id!r}")
        dataset = self.open(info.path)
        old = dataset.manifest
        if old.dataset_id != dataset_id or old.digest != info.manifest_digest:
            raise DatasetError("dataset.superseded", "the directory holds another manifest")
        tree, removed = MerkleRoot(), [0]

        def kept_lines() -> Iterator[bytes]:
            for _, line, digest, seal in dataset.verified_lines():
                try:
                    kept = seal is not None and keep(self._codec.open(seal))
                except (SealError, ContentError):
                    kept = False  # a record whose label cannot be read is not kept
                if kept:
                    tree.add(digest)
                    yield line + b"\n"
                else:
                    removed[0] += 1

        manifest = self._replace_files(info.path, old, kept_lines(), tree)
        self._store.update_dataset(
            dataset_id, record_count=manifest.record_count, manifest_digest=manifest.digest
        )
        self._audit.append(
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

    def _replace_files(
        self, path: Path, old: Manifest, lines: Iterator[bytes], tree: MerkleRoot
    ) -> Manifest:
        staged = [stage_file(path / RECORDS_FILE, lines)]  # fills ``tree``
        try:
            manifest = self._signer.sign(
                dataset_id=old.dataset_id,
                tenant=old.tenant,
                tree=tree,
                agreement_id=old.agreement_id,
                supersedes=old.digest,
            )
            staged.append(stage_file(path / MANIFEST_FILE, (manifest.to_json(),)))
            # records first: a crash between the renames leaves a dataset that fails closed
            staged[0].replace(path / RECORDS_FILE)
            staged[1].replace(path / MANIFEST_FILE)
        finally:
            for tmp in staged:
                tmp.unlink(missing_ok=True)
        return manifest

    def delete(self, tenant: TenantId) -> int:
        """Delete ``tenant``'s dataset files and rows (audited, counts only); return how many."""
        infos = self._store.list_datasets(validate_tenant(tenant))
        for info in infos:
            remove_dataset_files(info.path)
        rows = self._store.delete_dataset_rows(tenant)
        self._audit.append(
            {
                "event": "datasets.delete",
                "datasets": rows,
                "records": sum(info.record_count for info in infos),
            }
        )
        return rows
