"""Every indexed fingerprint in memory: which of a batch's fingerprints may be indexed.

A :class:`Prefilter` holds the fingerprints of the store as a sorted ``int64`` array
(plus a small sorted delta of those indexed since it was loaded), so a batch of records
asks the store only about the few fingerprints that are indexed at all, in one query,
instead of one query per record. Membership is :func:`numpy.searchsorted`, vectorized
over the batch.

It is loaded once per process, at its first use, and refreshed incrementally from the
store's log of indexed fingerprints (:meth:`~kairo_guard.store.base.Store.fingerprints_since`):
a check refreshes it when it starts and as it goes. Erasure only deletes, and deletes are
not read back, so a prefilter only ever over-includes: the store confirms every candidate
(:meth:`~kairo_guard.store.base.Store.match_fingerprints`), and an erased tenant's
fingerprints, still in memory, match nothing there.

Memory: 8 bytes per distinct fingerprint. 10 M fingerprints (about 2 M records of 200
bytes, or 25,000 documents of 40 kB) hold 80 MB; merging the delta in briefly needs about
three times that, and the first load, read in pages of 65,536 rows, as much again.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

Fingerprints = np.ndarray[Any, np.dtype[np.int64]]
"""Fingerprints as a numpy array (``int64``)."""

_EMPTY: Fingerprints = np.empty(0, dtype=np.int64)
MIN_DELTA = 1 << 16
"""The delta is merged into the main array past this size, or past 1/16 of it."""


class FingerprintLog(Protocol):
    """The part of the store a prefilter reads."""

    def fingerprints_since(self, after: int) -> tuple[list[int], int]:
        """Fingerprints indexed after position ``after`` and the position read up to."""
        ...


def sorted_unique(values: list[int] | Fingerprints) -> Fingerprints:
    """Return ``values`` as a sorted ``int64`` array without repeats."""
    return np.unique(np.asarray(values, dtype=np.int64))


def member(sorted_values: Fingerprints, probe: Fingerprints) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Return, for each of ``probe``, whether it is in ``sorted_values`` (sorted, unique)."""
    if not len(sorted_values):
        return np.zeros(len(probe), dtype=bool)
    at = np.searchsorted(sorted_values, probe)
    at[at == len(sorted_values)] = 0  # past the end: compare with anything, it differs
    found: np.ndarray[Any, np.dtype[np.bool_]] = sorted_values[at] == probe
    return found


class Prefilter:
    """Every indexed fingerprint (a superset of them), held in memory.

    Args:
        log: the store (anything with ``fingerprints_since``).

    Thread-safe: refreshes take a lock; lookups read one consistent pair of arrays.
    """

    def __init__(self, log: FingerprintLog) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._arrays: tuple[Fingerprints, Fingerprints] = (_EMPTY, _EMPTY)
        self.watermark = 0
        """The store's position read up to: everything indexed up to it is held."""
        self.loaded = False
        """Whether the first load is done."""

    def refresh(self) -> int:
        """Read what was indexed since the last refresh (everything, the first time);
        return how many rows were read.

        Raises:
            StoreError: the store cannot be read (the prefilter is unchanged).
        """
        with self._lock:
            base, delta = self._arrays
            pages: list[Fingerprints] = []
            watermark = self.watermark
            while True:
                rows, watermark = self._log.fingerprints_since(watermark)
                if not rows:
                    break
                pages.append(np.asarray(rows, dtype=np.int64))
            read = sum(len(p) for p in pages)
            if pages:
                new = sorted_unique(np.concatenate(pages))
                if not self.loaded and not len(base):
                    base = new
                else:
                    delta = np.union1d(delta, new)
                    if len(delta) > max(MIN_DELTA, len(base) >> 4):
                        base, delta = np.union1d(base, delta), _EMPTY
                self._arrays = (base, delta)  # one assignment: readers see both or neither
            self.watermark = watermark
            self.loaded = True
            return read

    def contains(self, probe: Fingerprints) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Return, for each fingerprint of ``probe``, whether it may be indexed (no false
        negatives for anything indexed up to :attr:`watermark`)."""
        base, delta = self._arrays
        found = member(base, probe)
        if len(delta):
            found |= member(delta, probe)
        return found

    def __len__(self) -> int:
        base, delta = self._arrays
        return len(base) + len(delta)

    @property
    def nbytes(self) -> int:
        """Bytes the held fingerprints take."""
        base, delta = self._arrays
        return int(base.nbytes + delta.nbytes)
