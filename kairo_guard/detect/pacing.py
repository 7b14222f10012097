"""When the spool's indexer process runs a pass: ingestion first, checks never kept waiting.

Indexing the same bodies costs the same CPU whenever it happens, but not the same to the
service: a pass competes with request handling for the cores and with the spool's
``fdatasync`` for the disk (its transaction and audit fsyncs). :class:`IndexPacing`
therefore defers passes while ingestion is busy, and runs one as soon as any of these
holds:

- a check at a shared sink (or operator vetting) waits for the watermark (it touched the
  spool's ``wanted`` file: :func:`want_index`);
- the backlog reached half the spool's limit (:data:`DEFER_FRACTION`: the other half
  absorbs what arrives while the indexer catches up);
- nothing was spooled for :data:`QUIET_SECONDS` (ingestion paused);
- the oldest unindexed body has waited :data:`MAX_DEFER_SECONDS`.

Once a pass is due for any reason but the pause, the indexer catches up: it runs passes
until the backlog is empty, then defers again. A pause is a reason only while it lasts:
ingestion that starts again (a segment grows, or a new one appears) defers the passes
again, so a gap between two bursts does not put the indexer in the next burst's way.
So under steady load the index lags by at most about :data:`MAX_DEFER_SECONDS` plus
the time to catch up, or the backlog bound; a waiting check ends the deferral at once,
and is never answered from a stale index: it waits for the watermark or blocks
(``index.lagging``).
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from kairo_guard.store.spool import backlog

WANTED_NAME = "wanted"
"""Touched in the spool directory by a check waiting for the index."""

DEFER_FRACTION = 0.5
"""Part of the spool's limit past which the indexer no longer defers."""
QUIET_SECONDS = 0.25
"""Ingestion paused this long: index now."""
MAX_DEFER_SECONDS = 30.0
"""The longest an unindexed body waits for a pass while ingestion stays busy."""
MAX_MARKS = 1024
"""Looks at the spool's end remembered for the age of its oldest body (thinned past it)."""
logger = logging.getLogger("kairo_guard.detect.pacing")


def want_index(directory: Path) -> None:
    """Tell the spool's indexer that a check waits for it (it indexes at once)."""
    try:
        fd = os.open(directory / WANTED_NAME, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.utime(fd)
        finally:
            os.close(fd)
    except OSError:  # the check waits all the same; the indexer comes at its pace
        logger.warning("cannot signal the spool's indexer in %s", directory, exc_info=True)


def wanted_at(directory: Path) -> float:
    """When a check last asked for the index (:func:`want_index`); 0.0 if never."""
    try:
        return (directory / WANTED_NAME).stat().st_mtime
    except OSError:
        return 0.0


class IndexPacing:
    """Decides, between passes, whether the indexer should run one now.

    Args:
        directory: the spool directory.
        max_backlog: the spool's limit (``limits.spool_max_bytes``); deferral stops at
            :data:`DEFER_FRACTION` of it.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        directory: Path,
        max_backlog: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.defer_bytes = max(1, int(max_backlog * DEFER_FRACTION))
        self._clock = clock
        self._sizes: dict[str, int] = {}
        self._grew = 0.0
        self._marks: collections.deque[tuple[float, tuple[str, int]]] = collections.deque()
        """(time, where the spool ended then), oldest first: how old the oldest
        unindexed body can be, whatever was indexed since it came."""
        self._draining = False
        self._served = time.time()  # wall clock, as file times are

    def due(self) -> bool:
        """True when a pass should run now (see the module docstring). Once one is due
        for a check, the backlog's size or age, passes stay due until the backlog is
        empty; for a pause in ingestion, while the pause lasts."""
        now = self._clock()
        measured = backlog(self.directory)
        pending = measured.pending_bytes
        sizes = dict(measured.sizes)
        if any(size > self._sizes.get(name, 0) for name, size in sizes.items()):
            self._grew = now  # written since: ingestion (indexing only shrinks the backlog)
        self._sizes = sizes
        if pending <= 0 or measured.oldest is None:
            self._marks.clear()
            self._draining = False
            return False
        marks, end = self._marks, max(measured.sizes)
        if len(marks) > 1 and marks[-1][1] == end:  # nothing new: the spool still ended
            marks[-1] = (now, end)  # there now (the first look keeps its time: the bound)
        else:
            marks.append((now, end))
            if len(marks) > MAX_MARKS:  # thinned: every age then errs on the old side
                kept = list(marks)
                marks.clear()
                marks.extend(kept[:1] + kept[1:-1:2] + kept[-1:])
        # the oldest unindexed body came after the last mark that ended at or before it
        while len(marks) > 1 and marks[1][1] <= measured.oldest:
            marks.popleft()
        self._draining = self._draining or (
            wanted_at(self.directory) >= self._served
            or pending >= self.defer_bytes
            or now - marks[0][0] >= MAX_DEFER_SECONDS
        )
        return self._draining or now - self._grew >= QUIET_SECONDS

    def passed(self, started: float) -> None:
        """Record that a pass started at ``started`` (wall clock) ran: a check that asked
        before then is served; one that asked during it gets another pass."""
        self._served = started
