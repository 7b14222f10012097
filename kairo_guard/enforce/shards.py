"""Vetted shards, written once by the roles that vet and opened cheaply at every sink.

:class:`ShardWriter` turns a vetted batch into a shard (:mod:`kairo_guard.core.shard`):
the records' digests under a Merkle root, their fingerprints (text and customer
identifiers, keyed hashes), the fingerprint index position they were vetted at, the
vetting policy's version, all signed with the signer's Ed25519 key and kept in the
store. Without a signing key there is no shard: a process that holds only public keys
cannot vouch for anything.

:class:`ShardRegistry` opens ``kp1`` seals for the seal codec: it loads a shard from
the store once, believes it only if the signature verifies under a trusted public key,
the Merkle root matches its digests and the fingerprint table matches its hash, and
then answers for each record with a dictionary lookup. At a shared sink it also says
which records need no content check (:meth:`ShardRegistry.clean`): a record is clean
when its shard was vetted under the sink's own policy and none of its fingerprints was
indexed after the shard's watermark. Everything else (a shard of an older policy, a
record sharing a fingerprint with content indexed since, a shard whose watermark is too
far behind to compare cheaply) goes through the sink's full content checks, as an
unvetted record would.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from kairo_guard.core.exceptions import KeyringError, SealError
from kairo_guard.core.seal import Label
from kairo_guard.core.shard import (
    SHARD_SEAL_LENGTH,
    ShardManifest,
    digest_index,
    merkle_root,
    parse_shard_seal,
    shard_id_of,
    shard_seal,
    sign_manifest,
    verify_manifest,
)
from kairo_guard.core.signing import SignerKeys, VerifyKeys
from kairo_guard.core.types import AuditAppender, DataClass, TenantId
from kairo_guard.store.base import ShardRow, ShardStore

MAX_SINCE = 4_000_000
"""Fingerprints indexed after a shard's watermark that a sink compares it with; past
this many, every record of the shard is checked in full (re-vet old shards instead)."""
MAX_CACHED_SHARDS = 256
"""Shards a registry holds verified at once (about 1.5 MB each of 10,000 records: the
digest index); past it the one held longest is dropped, to be verified again if
needed."""
_HEADER = 8
NO_SIGNER = (
    "this process holds no signing key, so it cannot vouch for operator data or mint "
    "anonymized telemetry: the vetting and aggregating roles hold one "
    "(KAIRO_GUARD_SIGNER_KEY, or signer.json from 'kairo-guard keys init'); training "
    "jobs hold only the public keys"
)


class FingerprintLog(Protocol):
    """What a registry reads of the fingerprint index."""

    def fingerprints_since(self, after: int) -> tuple[list[int], int]:
        """Fingerprints indexed after position ``after``, and the position read up to."""
        ...


def fingerprint_table(per_record: Sequence[np.ndarray[Any, Any]]) -> bytes:
    """Encode the shard's fingerprints: every (fingerprint, record) pair, sorted by
    fingerprint, as a count, the fingerprints (int64) and the record numbers (uint32)."""
    sizes = [len(a) for a in per_record]
    if not sum(sizes):
        return (0).to_bytes(_HEADER, "little")
    fps = np.concatenate([np.asarray(a, dtype="<i8") for a in per_record])
    recs = np.repeat(np.arange(len(sizes), dtype="<u4"), sizes)
    order = np.argsort(fps, kind="stable")
    return len(fps).to_bytes(_HEADER, "little") + fps[order].tobytes() + recs[order].tobytes()


def read_fingerprint_table(blob: bytes) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Decode :func:`fingerprint_table`: ``(fingerprints, record numbers)``.

    Raises:
        ValueError: a table of the wrong size.
    """
    n = int.from_bytes(blob[:_HEADER], "little")
    if len(blob) != _HEADER + 12 * n:
        raise ValueError("shard fingerprint table has the wrong size")
    fps = np.frombuffer(blob, dtype="<i8", count=n, offset=_HEADER)
    recs = np.frombuffer(blob, dtype="<u4", count=n, offset=_HEADER + 8 * n)
    return fps, recs


class ShardWriter:
    """Signs vetted batches into shards and keeps them in the store.

    Args:
        signer: the vetting role's keys, or None in a process that may not vouch.
        store: where shards are kept.
        audit: where each shard is recorded (ids, counts, root; never content).
        clock: Unix-seconds clock.
        retention: seconds a label of (tenant, class, source) is kept, or None.
    """

    def __init__(
        self,
        signer: SignerKeys | None,
        store: ShardStore,
        *,
        audit: AuditAppender,
        clock: Callable[[], float],
        retention: Callable[[TenantId | None, DataClass, str], int | None],
    ) -> None:
        self._signer = signer
        self._store = store
        self._audit = audit
        self._clock = clock
        self._retention = retention

    @property
    def can_sign(self) -> bool:
        """Whether this process holds a signing key."""
        return self._signer is not None

    def write(
        self,
        data_class: DataClass,
        source: str,
        digests: Sequence[str],
        fingerprints: Sequence[np.ndarray[Any, Any]],
        *,
        watermark: int,
        policy: str,
        created_at: int | None = None,
        expires_at: int | None = None,
    ) -> list[str]:
        """Sign and keep a shard of records vetted at ``watermark`` under ``policy``;
        return each record's ``kp1`` seal, in order. ``created_at`` (default now) starts
        the class's retention period, which sets ``expires_at`` unless it is given.

        Raises:
            KeyringError: no signing key in this process.
            ValueError: an invalid source or digest.
            StoreError: the shard cannot be kept (its seals would not verify).
        """
        if self._signer is None:
            raise KeyringError(NO_SIGNER)
        created = int(self._clock()) if created_at is None else created_at
        if expires_at is None:
            period = self._retention(None, data_class, source)
            expires_at = created + period if period else None
        leaves = b"".join(bytes.fromhex(d) for d in digests)
        if len(leaves) != 32 * len(digests):
            raise ValueError("a digest is not 64 hex characters")
        table = fingerprint_table(fingerprints)
        manifest = ShardManifest(
            data_class=data_class,
            source=source,
            created_at=created,
            expires_at=expires_at,
            records=len(digests),
            root=merkle_root(leaves),
            fingerprints=hashlib.sha256(table).hexdigest(),
            watermark=watermark,
            policy=policy,
            key_id=self._signer.signing_key_id,
        )
        signature = sign_manifest(manifest, self._signer)
        encoded = manifest.encode()
        shard_id = shard_id_of(encoded, signature)
        self._store.add_shard(ShardRow(shard_id, encoded, signature, leaves, table))
        self._audit.append(
            {
                "event": "shard",
                "class": data_class.value,
                "shard": shard_id,
                "count": manifest.records,
                "root": manifest.root,
                "watermark": watermark,
                "policy": policy,
                "key": manifest.key_id,
                "source": source,
            }
        )
        return [shard_seal(shard_id, d) for d in digests]


@dataclass
class _Shard:
    """A verified shard as a sink holds it."""

    manifest: ShardManifest
    label: Label
    index: dict[str, int]
    fps: np.ndarray[Any, Any]
    recs: np.ndarray[Any, Any]
    cursor: int
    dirty: set[int] = field(default_factory=set)
    since: int = 0
    blind: bool = False
    current: bool = False
    """Vetted under this guard's policy, and compared with what was indexed since."""


class ExportedShard(NamedTuple):
    """A verified shard as :meth:`ShardRegistry.export` gives it."""

    shard_id: str
    label: Label
    digests: bytes | np.ndarray[Any, Any]
    """Its records' content digests, 32 bytes each, in order (a byte array to travel
    out of band between processes)."""
    dirty: frozenset[int]
    """Numbers of its records that matched fingerprints indexed after it was vetted."""
    current: bool
    """Vetted under this guard's policy and compared in full with what was indexed."""


class ShardRegistry:
    """Opens ``kp1`` seals for the seal codec and tells sinks which records are clean.

    Args:
        store: where shards are kept.
        keys: the public keys shards may be signed with.
        policies: the version of this guard's vetting policy, per class: a shard vetted
            under another is checked in full at shared sinks.
        log: the fingerprint index's log (``fingerprints_since``).
        max_since: see :data:`MAX_SINCE`.

    Thread-safe: loading and refreshing take a lock; lookups read finished objects.
    """

    def __init__(
        self,
        store: ShardStore,
        keys: VerifyKeys,
        policies: Mapping[DataClass, str],
        log: FingerprintLog,
        *,
        max_since: int = MAX_SINCE,
    ) -> None:
        self._store = store
        self._keys = keys
        self._policies = dict(policies)
        self._log = log
        self._max_since = max_since
        self._lock = threading.Lock()
        self._shards: dict[str, _Shard] = {}
        self._by_label: dict[int, _Shard] = {}
        self._bad: dict[str, SealError] = {}
        self.generation = 0
        """Changes whenever a shard is loaded, dropped or compared (see :meth:`view`)."""

    def verify(self, seal: str) -> tuple[Label, str]:
        """See :meth:`~kairo_guard.core.seal.ShardSeals.verify`."""
        shard = self._shards.get(seal[4:36])
        digest = seal[37:]
        if (  # the hot path: a loaded shard, one of its records
            shard is not None
            and len(seal) == SHARD_SEAL_LENGTH
            and seal[36] == "."
            and digest in shard.index
        ):
            return shard.label, digest
        shard_id, digest = parse_shard_seal(seal)
        if shard is None:
            shard = self._load(shard_id)
        if digest not in shard.index:
            raise SealError("the record's digest is not one of its shard's", code="bad-tag")
        return shard.label, digest

    def clean(self, label: Label, digest: str) -> bool:
        """Whether a record of a shard (``label`` as :meth:`verify` returned it) needs no
        content check at a shared sink (see the module docstring)."""
        shard = self._by_label.get(id(label))
        return shard is not None and shard.current and shard.index[digest] not in shard.dirty

    def view(self) -> list[tuple[str, Label, dict[str, int], set[int]]]:
        """``(shard id, label, index, dirty records)`` of each loaded shard that is
        current: what a scan may take without content checks
        (:mod:`kairo_guard.core.shard_lines`), valid while :attr:`generation` stays."""
        with self._lock:
            return [(k, s.label, s.index, s.dirty) for k, s in self._shards.items() if s.current]

    def refresh(self) -> None:
        """Compare every loaded shard with what was indexed since it was last compared
        (when a check at a shared sink starts, and at each of its refreshes).

        Raises:
            StoreError: the index cannot be read (the caller's check fails closed).
        """
        with self._lock:
            held = list(self._shards.values())
            self.generation += 1
            for shard in held:
                shard.current = False  # until compared again: a failure leaves it so
            self._catch_up(held)
            for shard in held:
                shard.current = self._current(shard)
            self.generation += 1

    def _current(self, shard: _Shard) -> bool:
        policy = self._policies.get(shard.manifest.data_class)
        return not shard.blind and policy == shard.manifest.policy

    def export(self) -> list[ExportedShard]:
        """Every stored shard that verifies, compared with what was indexed since its
        watermark: what a process without the store needs to open its seals and tell
        clean records (Ray workers). A shard that does not verify is left out (its
        records then fail as seals of an unknown shard)."""
        found = []
        with self._lock:
            for shard_id in self._store.shard_ids():
                row = self._store.get_shard(shard_id)
                try:
                    shard = self._open(shard_id, row) if row is not None else None
                except SealError:
                    continue
                if shard is not None and row is not None:
                    self._catch_up([shard])
                    dirty, current = frozenset(shard.dirty), self._current(shard)
                    found.append(ExportedShard(shard_id, shard.label, row.digests, dirty, current))
        return found

    def _load(self, shard_id: str) -> _Shard:
        with self._lock:
            found = self._shards.get(shard_id)
            if found is not None:
                return found
            bad = self._bad.get(shard_id)
            if bad is not None:
                raise bad
            row = self._store.get_shard(shard_id)
            if row is None:  # not cached: it may be written by a vetting still running
                raise SealError(f"unknown shard {shard_id}", code="unknown-key")
            try:
                shard = self._open(shard_id, row)
            except SealError as exc:
                if len(self._bad) >= MAX_CACHED_SHARDS:
                    self._bad.clear()
                self._bad[shard_id] = exc
                raise
            self._catch_up([shard])
            shard.current = self._current(shard)
            if len(self._shards) >= MAX_CACHED_SHARDS:  # the longest held goes
                oldest = self._shards.pop(next(iter(self._shards)))
                self._by_label.pop(id(oldest.label), None)
            self._shards[shard_id] = shard
            self._by_label[id(shard.label)] = shard
            self.generation += 1
            return shard

    def _open(self, shard_id: str, row: ShardRow) -> _Shard:
        manifest = verify_manifest(row.manifest, row.signature, self._keys)
        if shard_id_of(row.manifest, row.signature) != shard_id:
            raise SealError("shard id does not name its manifest", code="bad-tag")
        digests = row.digests
        if len(digests) != 32 * manifest.records or merkle_root(digests) != manifest.root:
            raise SealError("shard digests do not match its signed Merkle root", code="bad-tag")
        if hashlib.sha256(row.fingerprints).hexdigest() != manifest.fingerprints:
            raise SealError("shard fingerprints do not match its manifest", code="bad-tag")
        try:
            fps, recs = read_fingerprint_table(row.fingerprints)
        except ValueError as exc:
            raise SealError(str(exc), code="bad-payload") from exc
        index = digest_index(digests)  # a repeated record keeps one number: same fingerprints
        return _Shard(manifest, manifest.label(), index, fps, recs, cursor=manifest.watermark)

    def _catch_up(self, shards: Iterable[_Shard]) -> None:
        """Compare shards with what was indexed after each one's cursor: one read of the
        index serves every shard at the same position (shards vetted between the same
        two indexings, most of a corpus vetted at once)."""
        groups: dict[int, list[_Shard]] = {}
        for shard in shards:
            if not shard.blind:
                groups.setdefault(shard.cursor, []).append(shard)
        for cursor, group in groups.items():
            while group:
                rows, position = self._log.fingerprints_since(cursor)
                if not rows:
                    break
                new = np.asarray(rows, dtype=np.int64)
                for shard in group:
                    shard.since += len(rows)
                    if shard.since > self._max_since:
                        shard.blind = True
                        continue
                    hit = np.isin(shard.fps, new)
                    if hit.any():
                        shard.dirty.update(shard.recs[hit].tolist())
                    shard.cursor = position
                group = [shard for shard in group if not shard.blind]
                cursor = position
