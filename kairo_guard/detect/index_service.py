"""The indexer as a service: :func:`serve` runs a :class:`SpoolIndexer` beside ingestion.

It runs in the indexer process (:mod:`kairo_guard.ingest.indexer_main`) or in a thread
of the service (:class:`~kairo_guard.ingest.spooling.IngestSpool`). When its service
ends it indexes what was spooled before, unless the service's shutdown bound
(``limits.shutdown_index_seconds``) passes first: then ``abandon()`` turns true and it
stops after the pass it is in. What it leaves stays durable in the spool; it is audited
(``spool.left_unindexed``) and indexed by the next indexer, or by the next check at a
shared sink, which waits for it (:func:`~kairo_guard.detect.indexer.wait_indexed`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kairo_guard.core.exceptions import StoreError
from kairo_guard.detect.indexer import SpoolIndexer
from kairo_guard.detect.pacing import IndexPacing
from kairo_guard.store.spool import backlog, covered, indexer_lock, snapshot

logger = logging.getLogger("kairo_guard.detect.index_service")
STORE_RETRY = 1.0
"""Seconds an indexer waits after the store failed a pass."""


def _never() -> bool:
    return False


def serve(
    indexer: SpoolIndexer,
    stop: Callable[[], bool],
    *,
    pacing: IndexPacing | None = None,
    pause: float = 0.05,
    full_batch: int = 512,
    pass_bytes: int = 32 << 20,
    abandon: Callable[[], bool] = _never,
) -> None:
    """Index the spool until ``stop()`` says so, then what it held then, unless
    ``abandon()`` says to leave it (see the module docstring).

    Waits for the indexer lock first: one indexer at a time per spool. Passes are paced
    by ``pacing`` (:class:`~kairo_guard.detect.pacing.IndexPacing`: deferred while
    ingestion is busy, at once when a check waits), each of about ``pass_bytes`` at
    most, so the pacing is asked again every few seconds; None: a pass whenever there
    is something to index, and the drain at the end unpaced. Between passes it sleeps
    ``pause`` seconds unless the last pass found a full batch (``full_batch`` bodies or
    more: there is more to do). After ``stop()`` (the service ended) the passes stay
    paced, so an indexer draining a backlog yields to a service still ingesting into
    the same spool; it ends once everything spooled before ``stop()`` is indexed, or
    after the pass during which ``abandon()`` turned true.
    """
    with indexer_lock(indexer.directory, wait=True):
        while not stop():
            if indexer.coverage is not None:  # replicas sharing the store wait on it
                indexer.coverage.tick()
            if pacing is None or pacing.due():
                started = time.time()
                count = _pass(indexer, pass_bytes if pacing is not None else None)
                if pacing is not None:
                    pacing.passed(started)
                if count >= full_batch:
                    continue
            time.sleep(pause)
        taken = snapshot(indexer.directory)
        failures = 0
        while not covered(taken):
            if abandon():
                _left(indexer)
                return
            if indexer.coverage is not None:
                indexer.coverage.tick()
            if pacing is not None and not pacing.due():
                time.sleep(pause)
                continue
            started = time.time()
            try:
                count = indexer.pass_once(pass_bytes)
            except StoreError as exc:  # (a store just back may fail a stale connection)
                failures += 1
                logger.warning("kairo-guard: a final index pass failed: %s", exc)
                if pacing is None and failures >= 3:
                    return  # what is left stays in the spool for the next indexer or check
                time.sleep(STORE_RETRY)
                continue
            if pacing is not None:
                pacing.passed(started)
            elif count == 0:  # nothing more it can index (a record still being written)
                return


def _left(indexer: SpoolIndexer) -> None:
    try:
        pending = backlog(indexer.directory).pending_bytes
    except StoreError:
        pending = -1
    logger.warning(
        "kairo-guard: the indexer stopped at its service's shutdown bound with %d bytes "
        "spooled and not yet indexed; the next indexer or shared-sink check indexes them",
        pending,
    )
    try:
        indexer.note_left(pending)
    except Exception:
        logger.exception("cannot audit what the indexer left")


def _pass(indexer: SpoolIndexer, budget: int | None) -> int:
    """One pass; the indexer outlives a store outage (progress is kept per commit)."""
    try:
        return indexer.pass_once(budget)
    except StoreError as exc:
        logger.warning("kairo-guard: an index pass failed, retried in %g s: %s", STORE_RETRY, exc)
        time.sleep(STORE_RETRY)
        return 0
