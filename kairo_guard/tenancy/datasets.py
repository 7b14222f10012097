"""Verified tenant datasets: opening one against its manifest, and reading it back.

:func:`open_dataset` reads ``manifest.json``, checks its signature, then reads every
record once, recomputing the count and the Merkle root of the content digests: a
:class:`VerifiedDataset` exists only for a dataset whose records were exactly the
manifest's when it was opened. It keeps those digests (32 bytes a record), and
iterating it reads the file again and compares every record with the digest at its
position *before* yielding it, so a file changed after opening fails closed: a
changed, added or moved record is never handed over, and a missing one raises at
the end. Order is part of the dataset: a reordered file does not verify.

How a dataset meets a sink is
:class:`~kairo_guard.tenancy.dataset_admission.DatasetAdmission`; how one is built,
pruned and deleted, :class:`~kairo_guard.tenancy.dataset_service.DatasetService`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from kairo_guard.core.content import content_digest, split_sealed_line
from kairo_guard.core.exceptions import ContentError
from kairo_guard.core.jsonl import BadLine, iter_raw_lines
from kairo_guard.core.types import SEAL_FIELD
from kairo_guard.tenancy.manifest import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    RECORDS_FILE,
    DatasetError,
    Manifest,
    ManifestSigner,
    MerkleRoot,
    parse_manifest,
)

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


def open_dataset(path: Path | str, signer: ManifestSigner, max_bytes: int) -> VerifiedDataset:
    """Verify a dataset directory against its manifest (see the module docstring).

    Args:
        path: the dataset directory.
        signer: verifies the manifest's signature.
        max_bytes: the longest record line read.

    Raises:
        DatasetError: unreadable, unsigned by a held key, or records not the manifest's.
    """
    path = Path(path)
    manifest = load_manifest(path)
    signer.verify(manifest)
    tree = MerkleRoot()
    digests = bytearray()
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
