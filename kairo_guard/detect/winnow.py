"""Winnowing fingerprints of text: the net for laundered customer content.

Text is normalized (invisible characters removed: format characters such as zero-width
spaces, soft hyphens and byte-order marks, and control characters such as NUL, which
would otherwise split every word they are slipped into; then Unicode NFKC, case folded,
look-alike characters mapped to one representative (Unicode TR39 confusables joined with
case folding, :mod:`kairo_guard.detect.confusables`: Cyrillic U+0430 is Latin ``a``), every
run of whitespace, punctuation or symbols collapsed to one space), cut into
overlapping k-grams of :data:`K` characters, and winnowed (Schleimer, Wilkerson, Aiken
2003): in every window of :data:`W` consecutive k-gram hashes the rightmost minimum is
selected. Two texts that share a normalized span of at least ``W + K - 1`` (89)
characters share at least one selected k-gram, and a shared span of ``L`` characters
shares at least ``floor((L - K + 1) / W)`` selected positions: 3 for 200 characters,
which is :data:`MIN_SHARED_FINGERPRINTS`. Fingerprints are a set, so positions whose
k-grams repeat (text that repeats a 50-character chunk, such as a table of identical
rows) count once: such a span may share fewer distinct fingerprints, but it also carries
little information. Spans shorter than :data:`K` (50) characters, the length of most
stock phrases, never produce a shared k-gram at all.

Window selection uses a fast unkeyed polynomial hash; what is stored and compared is a
keyed BLAKE2b hash (64 bits) of each selected k-gram, so the index holds nothing from
which text can be recovered or even confirmed without the guard's key.

Changing any of this changes every fingerprint: :data:`SCHEME` names the scheme, and an
index built under another scheme no longer matches the text it was built from.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kairo_guard.core.content import strip_invisible
from kairo_guard.detect.confusables import TABLE_SHA256, load_table, translator
from kairo_guard.detect.fields import record_strings

K = 50
"""k-gram length, in normalized characters."""
W = 40
"""Winnowing window, in k-grams."""
GUARANTEED_SPAN = W + K - 1
"""Any shared normalized span this long shares at least one fingerprint."""
MIN_SHARED_FINGERPRINTS = (200 - K + 1) // W
"""Fingerprints a shared 200-character span is guaranteed to share (3)."""
SCHEME = f"kg-winnow-k{K}-w{W}-nfkc-casefold-tr39-{TABLE_SHA256[:12]}"
"""Names the normalization and hashing of fingerprints: indexes made under another
scheme do not match text fingerprinted under this one."""

_BASE = np.uint64(0x100000001B3)  # odd, so invertible modulo 2**64
_BASE_INV = np.uint64(pow(0x100000001B3, -1, 2**64))
_SEPARATORS = re.compile(r"[\W_]+")
_LOOK_ALIKES = translator(load_table())  # folded character -> its representative


def normalize(text: str) -> str:
    """Return ``text`` without invisible characters, NFKC-normalized, case folded,
    look-alikes mapped to their representative, with separators collapsed."""
    folded = unicodedata.normalize("NFKC", strip_invisible(text)).casefold()
    return _SEPARATORS.sub(" ", _LOOK_ALIKES(folded)).strip()


def record_text(content: object) -> str:
    """Return the text of a record: its strings, in a stable order, space separated.

    Object keys count as text (each before its value); numbers and booleans do not;
    the seal field is skipped. Bytes are decoded as UTF-8 with replacement.
    """
    return " ".join(record_strings(content))


class _Powers:
    """BASE**i and BASE**-i modulo 2**64, grown on demand and shared (read-only)."""

    def __init__(self) -> None:
        self.up = np.ones(1, dtype=np.uint64)
        self.down = np.ones(1, dtype=np.uint64)

    def need(self, n: int) -> None:
        if len(self.up) > n:
            return
        size = max(n + 1, 2 * len(self.up), 4096)
        up = np.empty(size, dtype=np.uint64)
        down = np.empty(size, dtype=np.uint64)
        up[0] = down[0] = 1
        with np.errstate(over="ignore"):
            np.cumprod(np.full(size - 1, _BASE, dtype=np.uint64), out=up[1:])
            np.cumprod(np.full(size - 1, _BASE_INV, dtype=np.uint64), out=down[1:])
        self.up, self.down = up, down  # swap whole arrays: readers never see a half


_POWERS = _Powers()


def _rolling(codes: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Hash of every k-gram: sum of c[i+j] * BASE**j, modulo 2**64, in O(n)."""
    n = len(codes)
    _POWERS.need(n)
    up, down = _POWERS.up, _POWERS.down
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(codes * up[:n], out=prefix[1:])
    count = n - K + 1
    hashes: np.ndarray[Any, np.dtype[np.uint64]] = (prefix[K:] - prefix[:count]) * down[:count]
    return hashes


def winnow(normalized: str) -> list[int]:
    """Return the start offsets of the selected k-grams of normalized text."""
    if len(normalized) < K:
        return []
    codes = np.frombuffer(normalized.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        hashes = _rolling(codes)
    if len(hashes) <= W:
        return [int(len(hashes) - 1 - np.argmin(hashes[::-1]))]
    # rightmost minimum of each window: argmin of the reversed window
    chosen = W - 1 - sliding_window_view(hashes, W)[:, ::-1].argmin(axis=1)
    chosen += np.arange(len(chosen))
    # positions never decrease from one window to the next: drop repeats
    keep = np.empty(len(chosen), dtype=bool)
    keep[0] = True
    np.not_equal(chosen[1:], chosen[:-1], out=keep[1:])
    return chosen[keep].tolist()  # type: ignore[no-any-return]


class Fingerprinter:
    """Keyed winnowing fingerprints of text (64-bit signed ints, ready for SQL)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("fingerprint key must be at least 16 bytes")
        self._key = key[:64]

    def of_text(self, text: str) -> set[int]:
        """Return the fingerprints of ``text``."""
        normalized = normalize(text)
        key = self._key
        blake = hashlib.blake2b
        return {
            int.from_bytes(
                blake(normalized[p : p + K].encode("utf-8"), key=key, digest_size=8).digest(),
                "little",
                signed=True,
            )
            for p in winnow(normalized)
        }

    def of_record(self, content: object) -> set[int]:
        """Return the fingerprints of a record's text (see :func:`record_text`)."""
        return self.of_text(record_text(content))
