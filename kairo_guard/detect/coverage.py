"""Index coverage across ingestion replicas that share one store.

A check at a shared sink (and operator vetting) must see everything ingestion accepted
before it started. :func:`~kairo_guard.detect.indexer.wait_indexed` waits for this
state directory's spool; replicas with spools of their own publish, through the store,
how far their index has come (:mod:`kairo_guard.store.sqlite_coverage`), and
:func:`wait_replicas` waits for each of them. Times are the database's clock.

:class:`CoveragePublisher` runs in a replica's indexer loop: it takes the store's time
``t``, then a snapshot of the spool (which holds every body acknowledged before ``t``),
and once that snapshot is indexed publishes ``covered_until = t``. A check elsewhere
that finds a replica behind asks it to index now (``wanted_at``), which the publisher
passes on to its indexer's pacing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from kairo_guard.core.exceptions import IndexLagging, StoreError
from kairo_guard.detect.pacing import want_index
from kairo_guard.store.coverage import CoverageStore
from kairo_guard.store.spool import covered, snapshot

_LOG = logging.getLogger(__name__)
PUBLISH_EVERY = 0.25
"""Seconds between a replica's publications while nothing is asked of it."""


class CoveragePublisher:
    """Publishes a replica's index coverage from its indexer loop (:meth:`tick`)."""

    def __init__(self, store: CoverageStore, replica_id: str, spool: Path) -> None:
        self.store, self.replica_id, self.spool = store, replica_id, spool
        self._pending: tuple[float, dict[Path, int]] | None = None
        self._last = -PUBLISH_EVERY
        self._wanted_seen = 0.0

    def tick(self) -> None:
        """Publish what is covered now, at most every :data:`PUBLISH_EVERY` seconds."""
        if time.monotonic() - self._last < PUBLISH_EVERY:
            return
        self._last = time.monotonic()
        try:
            if self._pending is None:  # the time first: every body acknowledged before
                started = self.store.store_time()  # it is in the snapshot taken after
                self._pending = (started, snapshot(self.spool))
            started, taken = self._pending
            done = covered(taken)
            wanted = self.store.publish_coverage(self.replica_id, started if done else None)
        except StoreError as exc:  # the store is away: checks elsewhere wait, then refuse
            _LOG.warning("kairo-guard: index coverage not published: %s", exc)
            return
        if done:
            self._pending = None
        if wanted > self._wanted_seen:  # a check elsewhere waits: stop deferring
            self._wanted_seen = wanted
            want_index(self.spool)


def wait_replicas(
    store: CoverageStore,
    own: str,
    bound: float,
    *,
    poll: float = 0.02,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once every other replica has indexed what it accepted before the call.

    Raises:
        IndexLagging: if one has not within ``bound`` seconds (a replica gone for good
            stays behind until it is retired: ``store.retire_replica``).
    """
    others = [r for r in store.coverage() if r != own]
    if not others:
        return  # one state directory (the default): its own spool was waited for
    since = store.store_time()
    deadline = clock() + bound
    asked = False
    while True:
        found = store.coverage()
        behind = sorted(r for r in others if found.get(r, since) < since)
        if not behind:
            return
        if not asked:
            store.want_coverage(behind, since)
            asked = True
        if clock() >= deadline:
            raise IndexLagging(
                f"ingestion replica(s) {_heard(store, behind)} have not indexed what they "
                f"accepted before this check within {bound:g} s: records are blocked until "
                "they catch up (a replica gone for good must be retired: "
                "kairo-guard replicas retire NAME)"
            )
        time.sleep(poll)


def _heard(store: CoverageStore, behind: list[str]) -> str:
    """The replicas ``behind``, each with how long ago its indexer last published."""
    try:
        now = store.store_time()
        heard = {r.replica_id: now - r.heartbeat for r in store.replicas()}
    except StoreError:  # the message only: the refusal stands without it
        return ", ".join(behind)
    return ", ".join(
        f"{r} (last heard {heard[r]:.0f} s ago)" if r in heard else f"{r} (retired)" for r in behind
    )
