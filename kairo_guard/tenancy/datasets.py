"""Verified tenant datasets: opening them, and admitting them into fine-tune sinks.

:func:`open_dataset` reads ``manifest.json``, checks its signature, then reads every
record once, recomputing the count and the Merkle root of the content digests: a
:class:`VerifiedDataset` exists only for a dataset whose records were exactly the
manifest's when it was opened. It keeps those digests (32 bytes a record), and
iterating it reads the file again and compares every record with the digest at its
position *before* yielding it, so a file changed after opening fails closed: a
changed, added or moved record is never handed over, and a missing one raises at
the end. Order is part of the dataset: a reordered file does not verify.

At a ``tenant-fine-tune`` sink (:func:`admit_dataset`, used by ``@guard.sink`` and
``guard.check``) the dataset passes only if, when training starts, the manifest still
verifies, names the sink's tenant, is the current manifest of a dataset the store knows,
and the very agreement it records is still active; then every record is checked as
any record would be (seal, tenant, expiry). Everything is decided before the training
function receives the dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from kairo_guard.core.content import content_digest, split_sealed_line
from kairo_guard.core.exceptions import ContentError, IsolationViolation, StoreError
from kairo_guard.core.jsonl import BadLine, iter_raw_lines
from kairo_guard.core.report import CheckReport
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import SEAL_FIELD, Mode, Outcome, SinkKind, TenantId
from kairo_guard.enforce.check import SinkCheck
from kairo_guard.store.sqlite import Agreement
from kairo_guard.tenancy.manifest import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    RECORDS_FILE,
    DatasetError,
    Manifest,
    MerkleRoot,
    parse_manifest,
    verify_manifest,
)

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

_sha256 = hashlib.sha256
RecordLine = tuple[int, bytes, bytes, "str | None"]
"""(position, line, raw content digest, seal) of one record of ``records.jsonl``."""


def read_record_lines(path: Path, max_bytes: int) -> Iterator[RecordLine]:
    """Yield every record of a ``records.jsonl``; blank lines are not allowed.

    Raises:
        DatasetError: ``dataset.records-mismatch`` for a line that is not a record,
            ``dataset.unreadable`` if the file cannot be read.
    """
    try:
        with path.open("rb") as stream:
            for index, raw in enumerate(iter_raw_lines(stream, max_bytes)):
                yield (index, *_record_digest(index, raw))
    except OSError as exc:
        raise DatasetError("dataset.unreadable", f"cannot read {path}: {exc.strerror}") from exc


def _record_digest(index: int, raw: bytes | BadLine) -> tuple[bytes, bytes, str | None]:
    if isinstance(raw, bytes):
        split = split_sealed_line(raw)
        if split is not None:
            return raw, _sha256(split[0]).digest(), split[1]
        try:  # not in sealed-line form: digest its parsed content
            value = orjson.loads(raw)
            if isinstance(value, dict):
                seal = value.get(SEAL_FIELD)
                digest = bytes.fromhex(content_digest(value))
                return raw, digest, seal if isinstance(seal, str) else None
        except (orjson.JSONDecodeError, ContentError):
            pass
    raise DatasetError("dataset.records-mismatch", f"record {index} is not a JSON object record")


class VerifiedDataset:
    """A tenant dataset whose records matched its signed manifest (see the module doc).

    Iterate it for the records (dicts, seal under ``_kairo``); ``manifest`` says what
    it is. Iteration raises :class:`~kairo_guard.tenancy.manifest.DatasetError` as soon as the
    file stops matching what was verified.
    """

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        digests: bytes,
        max_bytes: int,
        skip: frozenset[int] = frozenset(),
    ) -> None:
        self.path = path
        self.manifest = manifest
        self._digests = digests
        self._max_bytes = max_bytes
        self.skipped = skip
        """Positions left out (a ``filter``-mode sink refused them)."""

    def __len__(self) -> int:
        return self.manifest.record_count - len(self.skipped)

    def __repr__(self) -> str:
        return f"VerifiedDataset({self.manifest.dataset_id!r}, records={len(self)})"

    def without(self, positions: frozenset[int]) -> VerifiedDataset:
        """Return the same dataset with more record positions left out."""
        return VerifiedDataset(
            self.path, self.manifest, self._digests, self._max_bytes, self.skipped | positions
        )

    def verified_lines(self) -> Iterator[RecordLine]:
        """Yield every record line, each compared with the verified digest first."""
        count = self.manifest.record_count
        seen = 0
        for entry in read_record_lines(self.path / RECORDS_FILE, self._max_bytes):
            index, digest = entry[0], entry[2]
            if index >= count or self._digests[index * 32 : index * 32 + 32] != digest:
                raise DatasetError(
                    "dataset.records-mismatch",
                    f"record {index} is not the record the manifest lists there",
                )
            seen = index + 1
            yield entry
        if seen != count:
            raise DatasetError(
                "dataset.records-mismatch", f"{count - seen} of the manifest's records are missing"
            )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        skip = self.skipped
        for index, line, _, _ in self.verified_lines():
            if index not in skip:
                record: dict[str, Any] = orjson.loads(line)
                yield record


def load_manifest(path: Path) -> Manifest:
    """Read and parse ``manifest.json`` in a dataset directory (shape only).

    Raises:
        DatasetError: unreadable or malformed.
    """
    try:
        with (path / MANIFEST_FILE).open("rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise DatasetError(
            "dataset.unreadable", f"cannot read {path / MANIFEST_FILE}: {exc.strerror}"
        ) from exc
    return parse_manifest(data)


def open_dataset(guard: Guard, path: Path | str) -> VerifiedDataset:
    """Verify a dataset directory against its manifest; see :meth:`Guard.open_dataset`."""
    path = Path(path)
    manifest = load_manifest(path)
    verify_manifest(guard.keys, manifest)
    tree = MerkleRoot()
    digests = bytearray()
    max_bytes = guard.settings.limits.max_record_bytes
    for index, _, digest, _ in read_record_lines(path / RECORDS_FILE, max_bytes):
        if index >= manifest.record_count:
            raise DatasetError("dataset.records-mismatch", "more records than the manifest lists")
        tree.add(digest)
        digests += digest
    if tree.count != manifest.record_count or tree.hexdigest() != manifest.merkle_root:
        raise DatasetError(
            "dataset.records-mismatch",
            f"records do not match the manifest ({tree.count} read, "
            f"{manifest.record_count} listed, or a record was changed or moved)",
        )
    return VerifiedDataset(path, manifest, bytes(digests), max_bytes)


def fine_tune_agreement(
    guard: Guard, tenant: TenantId, agreement_id: str | None = None
) -> Agreement | None:
    """Return the tenant's newest agreement that permits fine-tuning now (or that one).

    None when there is none, or when the store cannot say (fail closed).
    """
    now = guard.clock()
    try:
        agreements = guard.store.list_agreements(tenant)
    except StoreError:
        return None
    for agreement in reversed(agreements):
        if agreement_id in (None, agreement.id) and agreement.permits_fine_tune(now):
            return agreement
    return None


def _dataset_problem(guard: Guard, dataset: VerifiedDataset, sink: Sink) -> DatasetError | None:
    manifest = dataset.manifest
    if sink.kind is not SinkKind.TENANT_FINE_TUNE:
        return DatasetError(
            "dataset.shared-sink", "a tenant dataset never reaches a shared training sink"
        )
    try:
        verify_manifest(guard.keys, manifest)
    except DatasetError as exc:
        return exc
    if manifest.tenant != sink.tenant:
        return DatasetError(
            "dataset.tenant-mismatch", "the dataset belongs to another tenant than the sink's"
        )
    try:
        info = guard.store.get_dataset(manifest.dataset_id)
    except StoreError as exc:
        return DatasetError("guard.error", f"cannot look the dataset up: {exc}")
    if info is None or info.tenant != manifest.tenant:
        return DatasetError("dataset.unknown", "no such dataset is recorded (deleted or foreign)")
    if info.manifest_digest != manifest.digest:
        return DatasetError(
            "dataset.superseded", "this manifest was replaced (the dataset was pruned)"
        )
    if fine_tune_agreement(guard, manifest.tenant, manifest.agreement_id) is None:
        return DatasetError(
            "dataset.agreement-inactive",
            "the agreement the dataset was built under is revoked, expired or out of scope",
        )
    return None


def decide_dataset(run: SinkCheck, guard: Guard, dataset: VerifiedDataset) -> frozenset[int] | None:
    """Decide a dataset at a sink: None if refused as a whole, else refused positions."""
    problem = _dataset_problem(guard, dataset, run.sink)
    refused: set[int] = set()
    if problem is None:
        tree = MerkleRoot()  # recomputed here: the sink trusts no object, only the manifest
        try:
            for index, line, digest, seal in dataset.verified_lines():
                tree.add(digest)
                if index in dataset.skipped:
                    continue
                content = split_sealed_line(line)
                body = content[0] if content is not None else orjson.loads(line)
                decision = run.decide_parts(
                    body, seal, digest.hex(), index, json_bytes=content is not None
                )
                if decision.outcome is not Outcome.ALLOW:
                    refused.add(index)
            if tree.hexdigest() != dataset.manifest.merkle_root:
                problem = DatasetError(
                    "dataset.records-mismatch", "records do not match the manifest"
                )
        except DatasetError as exc:
            problem = exc
    if problem is not None:
        run.block_unreadable(problem.rule, problem.reason, dataset.manifest.digest, 0)
        return None
    return frozenset(refused)


def check_dataset(
    guard: Guard, dataset: VerifiedDataset, sink: Sink, mode: Mode | None
) -> tuple[VerifiedDataset | None, CheckReport]:
    """Decide ``dataset`` for ``sink``; return what may pass (None: nothing) and the report."""
    run = guard.start_check(sink, mode=mode)
    refused = decide_dataset(run, guard, dataset)
    report = run.finish()
    if run.mode is Mode.OBSERVE:
        return dataset, report
    if refused is None:
        return None, report
    return dataset.without(refused) if refused else dataset, report


def admit_dataset(
    guard: Guard,
    sink: Sink,
    dataset: VerifiedDataset,
    report_to: Callable[[CheckReport], None],
) -> VerifiedDataset:
    """Return the dataset a decorated training function may receive.

    Raises:
        IsolationViolation: ``enforce`` mode with any refusal, or a dataset refused as
            a whole in ``filter`` mode (nothing verifiable is left to pass).
    """
    passed, report = check_dataset(guard, dataset, sink, None)
    report_to(report)
    if passed is None or (not report.ok and sink.mode is Mode.ENFORCE):
        raise IsolationViolation(report)
    return passed
