"""Tests that start a Ray cluster take turns across the pytest-xdist workers of a session.

``make test`` runs the suite in two processes on a two-core machine: two Ray clusters at
once (each started with ``num_cpus=2``) would compete for the cores. A turn is an
exclusive ``flock`` on a file that every worker of the session shares; a test (or a
module's cluster fixture) holds it while its cluster runs. In one process the turn is
always free. (pytest-xdist's ``--dist loadgroup`` would put such tests on one worker, but
with pytest 9.2 it silently stops grouping: pytest-dev/pytest-xdist#1386.)
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

__all__ = ["RayTurns"]


class RayTurns:
    """Turns at running a Ray cluster: ``lock`` is the file the workers share, None when
    the session runs in one process."""

    def __init__(self, lock: Path | None) -> None:
        self.lock = lock
        self.held = False

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Wait for this worker's turn and hold it for the block (re-entrant)."""
        if self.lock is None or self.held:
            yield
            return
        with self.lock.open("a") as file:  # closing the file releases the lock
            fcntl.flock(file, fcntl.LOCK_EX)
            self.held = True
            try:
                yield
            finally:
                self.held = False
