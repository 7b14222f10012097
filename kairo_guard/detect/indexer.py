"""The spool's indexer: bodies accepted by ingestion, fingerprinted in batches.

:class:`SpoolIndexer` reads the segments of an ingestion spool
(:mod:`kairo_guard.store.spool`), reads each body as the streaming reader does
(:func:`~kairo_guard.detect.body.read_body`), fingerprints it, and writes the batch's
fingerprints and provenance rows in one transaction; then it audits each sealing (the
``seal`` entry the middleware no longer writes on the request path, with the body's
size and fingerprint count, and the method and path hash of the request that
brought the body: it stands for the request's own entry) and records how far it got.
One indexer runs at a time per spool (an ``flock``); any process may be it.

:func:`wait_indexed` is the index watermark: a check at a shared sink calls it before
its first record, and it returns once everything spooled before the call is indexed,
indexing the spool itself when no indexer is running (after a crash, the spool is
indexed before any shared sink passes anything), or raises ``IndexLagging`` past its bound.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from kairo_guard.core.exceptions import IndexLagging, SealError
from kairo_guard.core.keys import pseudonymize_name
from kairo_guard.core.seal import Label
from kairo_guard.core.types import AuditAppender, JSONValue, TenantId
from kairo_guard.detect.body import read_body
from kairo_guard.detect.coverage import CoveragePublisher
from kairo_guard.detect.identifiers import CustomerIdentifiers
from kairo_guard.detect.pacing import want_index
from kairo_guard.detect.winnow import Fingerprinter
from kairo_guard.store.base import ProvenanceRow
from kairo_guard.store.spool import (
    UNMADE_GRACE,
    SpoolRecord,
    covered,
    finished,
    indexed_offset,
    indexer_lock,
    read_segment,
    remove_segment,
    resync,
    segments,
    set_indexed_offset,
    snapshot,
    sweep_unmade,
)

logger = logging.getLogger("kairo_guard.detect.indexer")
PARALLEL_BYTES = 1 << 20
"""A batch smaller than this is fingerprinted in one thread (not worth the hand-off)."""
INDEX_LAGGING_RULE = "index.lagging"
"""The rule of every record of a check that started while the index lagged too far."""


class IngestedRows(Protocol):
    """The part of the store the indexer writes."""

    def record_ingested(
        self, fingerprints: Iterable[tuple[int, TenantId]], provenance: Iterable[ProvenanceRow]
    ) -> None:
        """Add fingerprints (idempotent) and provenance rows in one transaction."""
        ...


class FlushedAudit(AuditAppender, Protocol):
    """The audit log as the indexer needs it: entries, then a flush before progress."""

    def flush(self) -> None:
        """Write every appended entry to disk."""
        ...


class ErasedTenants(Protocol):
    """The store's record of erased tenants."""

    def erased_tenants(self) -> dict[str, float]:
        """Return pseudonym -> erasure time."""
        ...


class IndexStore(IngestedRows, ErasedTenants, Protocol):
    """The store as the indexer uses it."""


class SealOpener(Protocol):
    """Verifies a seal and returns its label (:class:`~kairo_guard.core.seal.SealCodec`)."""

    def open(self, seal: object) -> Label:
        """Verify ``seal``; raise SealError if it does not verify."""
        ...


class SpoolIndexer:
    """Indexes a spool's bodies, a batch per transaction.

    Args:
        directory: the spool.
        fingerprinter: makes the fingerprints (the guard's keyed one).
        store: where fingerprints and provenance rows go.
        codec: opens the seals the middleware wrote.
        pseudonym: tenant -> pseudonym (audit entries).
        audit: the audit log (flushed before progress is recorded).
        batch_bytes: how much of a segment one transaction covers at most.
        identifiers: adds the keyed hashes of each body's identifiers
            (:mod:`kairo_guard.detect.identifiers`), or None.
    """

    def __init__(
        self,
        directory: Path,
        *,
        fingerprinter: Fingerprinter,
        store: IndexStore,
        codec: SealOpener,
        pseudonym: Callable[[TenantId], str],
        audit: FlushedAudit,
        batch_bytes: int = 8 << 20,
        identifiers: CustomerIdentifiers | None = None,
    ) -> None:
        self._identifiers = identifiers
        self.directory = directory
        self._fingerprinter = fingerprinter
        self._store = store
        self._codec = codec
        self._pseudonym = pseudonym
        self._audit = audit
        self._batch_bytes = batch_bytes
        self.indexed = 0
        """Bodies indexed by this indexer."""
        self.coverage: CoveragePublisher | None = None
        """Publishes how far the index has come, for replicas sharing the store."""
        self.workers = 1
        """Threads that fingerprint a batch's bodies side by side (the native core runs
        without the interpreter lock): the indexer process uses every core it may (it
        runs only on the CPU time the service leaves); one in a service's thread."""
        self._pool: ThreadPoolExecutor | None = None
        self._swept_at = -UNMADE_GRACE
        """When (monotonic) the last sweep of dead writers' unnamed segments ran."""

    def pass_once(self, max_bytes: int | None = None) -> int:
        """Index what the spool holds now (the caller holds the indexer lock): each
        segment up to its size when the pass reached it (a segment still written is not
        chased), and about ``max_bytes`` at most (None: no bound); return how many
        bodies were indexed."""
        total = budget = 0
        now = time.monotonic()
        if now - self._swept_at >= UNMADE_GRACE:  # a leftover must be that old to go
            self._swept_at = now
            sweep_unmade(self.directory)
        for segment in segments(self.directory):
            if max_bytes is not None and budget >= max_bytes:
                break
            done = finished(segment)  # before reading: a finished segment is read whole
            pos = indexed_offset(segment)
            end = _size(segment)
            while max_bytes is None or budget < max_bytes:
                read = read_segment(segment, pos, self._batch_bytes)
                if read.records:
                    self._commit(read.records)
                    budget += read.stop - pos
                    pos = read.stop
                    set_indexed_offset(segment, pos)
                    total += len(read.records)
                    if pos >= end and not done:  # what came since is the next pass's
                        break
                if read.tail and done:
                    pos = self._skip_damage(segment, pos)
                    if pos < _size(segment):
                        continue  # records after the damage are read too
                if not read.records:
                    break
            if done and pos >= _size(segment):
                remove_segment(segment)
        self.indexed += total
        return total

    def drain(self) -> int:
        """Index until the spool holds nothing more; return how many bodies."""
        total = 0
        while count := self.pass_once():
            total += count
        return total

    def note_left(self, pending: int) -> None:
        """Audit that the indexer stopped with ``pending`` spooled bytes not indexed (its
        service's shutdown bound passed): the next indexer or check indexes them."""
        self._audit.append({"event": "spool.left_unindexed", "bytes": pending})
        self._audit.flush()

    def _skip_damage(self, segment: Path, pos: int) -> int:
        """Skip a record that is cut short or fails its CRC in a finished segment: to
        the next valid record (damage: audited as ``spool.damaged``), or to the end (a
        torn tail, never acknowledged: the fdatasync that would have covered it did not
        return; audited as ``spool.torn_tail``)."""
        size = _size(segment)
        if size <= pos:
            return size
        found = resync(segment, pos)
        event, to = ("spool.torn_tail", size) if found is None else ("spool.damaged", found)
        self._audit.append({"event": event, "segment": segment.name, "bytes": to - pos})
        self._audit.flush()
        set_indexed_offset(segment, to)
        return to

    def _commit(self, records: list[SpoolRecord]) -> None:
        fingerprints: list[tuple[int, TenantId]] = []
        rows: list[ProvenanceRow] = []
        entries: list[dict[str, JSONValue]] = []
        erased = self._store.erased_tenants()
        pseudonyms = [self._pseudonym(TenantId(r.tenant)) for r in records]
        kept = [r.body for r, p in zip(records, pseudonyms, strict=True) if p not in erased]
        each = iter(self._all_fingerprints(kept))
        for record, pseudonym in zip(records, pseudonyms, strict=True):
            tenant = TenantId(record.tenant)
            if pseudonym in erased:  # accepted as the tenant was erased
                entries.append({"event": "spool.erased", "tenant": pseudonym})
                continue
            found = next(each)
            fingerprints.extend((fp, tenant) for fp in found)
            entries.append(self._seal_entry(record, tenant, pseudonym, len(found), rows))
        self._store.record_ingested(fingerprints, rows)
        for entry in entries:
            self._audit.append(entry)
        self._audit.flush()  # before the progress: entries may repeat, never go missing

    def _all_fingerprints(self, bodies: list[bytes]) -> list[set[int]]:
        """The fingerprints of each body, in order; split among :attr:`workers` threads
        when the batch is large enough to gain from it."""
        workers = min(self.workers, len(bodies))
        if workers <= 1 or sum(len(b) for b in bodies) < PARALLEL_BYTES:
            return [self._fingerprints_of(b) for b in bodies]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kairo-guard-fp")
        step = -(-len(bodies) // workers)
        parts = [bodies[at : at + step] for at in range(0, len(bodies), step)]
        done = self._pool.map(lambda part: [self._fingerprints_of(b) for b in part], parts)
        return [found for part in done for found in part]

    def _fingerprints_of(self, body: bytes) -> set[int]:
        found: set[int] = set()
        add = self._fingerprinter.of_record
        identifiers = self._identifiers

        def index(content: object) -> None:
            found.update(add(content))
            if identifiers is not None:
                found.update(identifiers.of_record(content))

        try:
            read_body(body, index)
        except Exception:  # what cannot be read is indexed as its bytes
            logger.exception("spooled body could not be read; indexed as UTF-8 text")
            text = body.decode("utf-8", "replace")
            found.update(self._fingerprinter.of_text(text))
            if identifiers is not None:
                found.update(identifiers.of_text(text))
        return found

    def _seal_entry(
        self,
        record: SpoolRecord,
        tenant: TenantId,
        pseudonym: str,
        count: int,
        rows: list[ProvenanceRow],
    ) -> dict[str, JSONValue]:
        entry: dict[str, JSONValue] = {
            "event": "fingerprints.index",
            "tenant": pseudonym,
            "count": count,
        }
        if not record.seal:
            return entry
        try:
            label = self._codec.open(record.seal)
        except SealError as exc:  # indexed all the same, under the record's tenant
            return {**entry, "error": f"spooled seal does not verify: {exc}"}
        rows.append(ProvenanceRow.of_label(label, tenant))
        entry = {
            "event": "seal",
            "class": label.data_class.value,
            "tenant": pseudonym,
            "source": pseudonymize_name(label.source, tenant, pseudonym),
            "digest": label.digest,
            "bytes": len(record.body),
            "fingerprints": count,
        }
        if record.meta:  # the accepted request: this entry stands for its audit entry
            method, _, path = record.meta.partition(b" ")
            entry["method"] = method.decode("ascii", "replace")
            entry["path_sha256"] = hashlib.sha256(path).hexdigest()[:32]
        return entry


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


ASK_EVERY = 1.0
"""Seconds between a waiting check's requests to the indexer process (``want_index``)."""


def wait_indexed(
    indexer: SpoolIndexer,
    bound: float,
    *,
    poll: float = 0.002,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once everything spooled before the call is indexed.

    While no other process holds the indexer lock, the caller indexes the spool itself.

    Raises:
        IndexLagging: if it is not indexed within ``bound`` seconds.
    """
    taken = snapshot(indexer.directory)
    if not taken:
        return
    deadline = clock() + bound
    asked = -ASK_EVERY
    while not covered(taken):
        with indexer_lock(indexer.directory, wait=False) as mine:
            if mine:
                indexer.drain()
            elif clock() - asked >= ASK_EVERY:  # the indexer process stops deferring
                want_index(indexer.directory)  # (asked again: it may have started since)
                asked = clock()
        if covered(taken):
            return
        if clock() >= deadline:  # (a record a live writer has not finished stays short)
            pending = sum(size - indexed_offset(seg) for seg, size in taken.items())
            raise IndexLagging(
                f"the fingerprint index is behind ingestion by {max(pending, 0)} bytes after "
                f"waiting {bound:g} s: records are blocked until it catches up"
            )
        time.sleep(poll)
