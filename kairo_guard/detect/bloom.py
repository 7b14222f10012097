"""A compact, signed export of the fingerprint index: a Bloom filter.

For checks in processes that cannot reach the store (Ray workers, air-gapped jobs). It
holds the keyed 64-bit fingerprints that count (boilerplate already discounted), each
set at ``k`` bit positions by double hashing. It answers "possibly a tenant's" or
"certainly not": a false positive blocks a record, a false negative cannot happen, so it
never allows what the store would block (for fingerprints exported at the time).

The per-fingerprint false-positive rate ``p`` is chosen at export (default 0.1%); a
record is refused on ``min_shared`` hits, so a record of ``n`` fingerprints is falsely
refused with probability about ``C(n, 3) * p**3``, or ``p`` for a record of one or two
fingerprints (the ``min_fraction`` rule). The file is HMAC-signed with the guard's key;
a filter that does not verify is refused (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from kairo_guard.core.exceptions import ConfigError, KairoGuardError
from kairo_guard.detect.fingerprint import SCHEME, Fingerprinter, Overlap

MAGIC = b"KGBLOOM1\n"
MAX_BITS = 1 << 36


class FilterError(KairoGuardError):
    """A Bloom filter file is malformed, from another key, or altered."""


def _positions(fps: np.ndarray[Any, np.dtype[np.uint64]], m: int, k: int) -> np.ndarray[Any, Any]:
    low = fps & np.uint64(0xFFFFFFFF)
    high = (fps >> np.uint64(32)) | np.uint64(1)
    steps = np.arange(k, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (low[:, None] + steps[None, :] * high[:, None]) % np.uint64(m)


class FingerprintFilter:
    """Bloom filter over fingerprints; see the module docstring for its guarantees."""

    def __init__(
        self, bits: np.ndarray[Any, np.dtype[np.uint8]], *, m: int, k: int, meta: dict[str, Any]
    ) -> None:
        self._bits = bits
        self.m = m
        self.k = k
        self.meta = meta

    @classmethod
    def build(
        cls,
        fingerprints: Iterable[int],
        *,
        count: int,
        fp_rate: float = 0.001,
        meta: dict[str, Any] | None = None,
    ) -> FingerprintFilter:
        """Return a filter sized for ``count`` fingerprints at ``fp_rate`` each."""
        if not 0 < fp_rate < 1:
            raise ConfigError("fp_rate must be between 0 and 1")
        n = max(count, 1)
        m = max(64, math.ceil(-n * math.log(fp_rate) / math.log(2) ** 2))
        if m > MAX_BITS:
            raise ConfigError(f"a filter of {m} bits is too large; raise fp_rate")
        k = max(1, round(m / n * math.log(2)))
        bits = np.zeros((m + 7) // 8, dtype=np.uint8)
        flt = cls(bits, m=m, k=k, meta={**(meta or {}), "n": count, "fp_rate": fp_rate})
        batch: list[int] = []
        for fp in fingerprints:
            batch.append(fp)
            if len(batch) >= 65536:
                flt._add(batch)
                batch = []
        flt._add(batch)
        return flt

    def _add(self, fps: list[int]) -> None:
        if not fps:
            return
        pos = _positions(np.array(fps, dtype=np.int64).view(np.uint64), self.m, self.k).ravel()
        np.bitwise_or.at(self._bits, (pos >> np.uint64(3)).astype(np.int64),
                         (np.uint8(1) << (pos & np.uint64(7)).astype(np.uint8)))  # fmt: skip

    def contains(self, fps: Iterable[int]) -> int:
        """Return how many of ``fps`` are possibly in the filter."""
        values = list(fps)
        if not values:
            return 0
        pos = _positions(np.array(values, dtype=np.int64).view(np.uint64), self.m, self.k)
        hits = (
            self._bits[(pos >> np.uint64(3)).astype(np.int64)]
            >> (pos & np.uint64(7)).astype(np.uint8)
        ) & 1
        return int(hits.all(axis=1).sum())

    def overlap(self, content: object, fingerprinter: Fingerprinter) -> Overlap | None:
        """Like :meth:`FingerprintIndex.overlap`, without tenant identity ("?")."""
        fps = fingerprinter.of_record(content)
        if not fps:
            return None
        shared = self.contains(fps)
        found = Overlap("?", shared, len(fps))
        min_shared = int(self.meta.get("min_shared", 3))
        min_fraction = float(self.meta.get("min_fraction", 0.5))
        if shared and (shared >= min_shared or found.ratio >= min_fraction):
            return found
        return None

    def save(self, path: Path, key: bytes) -> None:
        """Write the signed filter to ``path``."""
        header = orjson.dumps({"v": 1, "m": self.m, "k": self.k, **self.meta})
        body = self._bits.tobytes()
        mac = hmac.new(key, MAGIC + header + b"\n" + body, hashlib.sha256).hexdigest()
        path.write_bytes(MAGIC + header + b"\n" + mac.encode() + b"\n" + body)

    @classmethod
    def load(cls, path: Path, key: bytes) -> FingerprintFilter:
        """Read and verify a filter file.

        Raises:
            FilterError: if it is malformed, signed with another key, or altered.
        """
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FilterError(f"cannot read {path}: {exc.strerror}") from exc
        if not data.startswith(MAGIC):
            raise FilterError(f"{path} is not a kairo-guard fingerprint filter")
        header, _, rest = data[len(MAGIC) :].partition(b"\n")
        mac, _, body = rest.partition(b"\n")
        expected = hmac.new(key, MAGIC + header + b"\n" + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected.encode()):
            raise FilterError(f"{path}: signature does not verify (other key, or altered)")
        meta = orjson.loads(header)
        m, k = int(meta.pop("m")), int(meta.pop("k"))
        meta.pop("v", None)
        if len(body) != (m + 7) // 8:
            raise FilterError(f"{path}: bit array has the wrong size")
        if meta.get("scheme") != SCHEME:  # its bits would match nothing fingerprinted now
            raise FilterError(
                f"{path}: made under fingerprint scheme {meta.get('scheme') or 'unrecorded'}, "
                f"not {SCHEME}: export it again from a re-indexed store"
            )
        return cls(np.frombuffer(body, dtype=np.uint8).copy(), m=m, k=k, meta=meta)
