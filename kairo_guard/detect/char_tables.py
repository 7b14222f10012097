"""Per-code-point tables of the fingerprint normalization, computed from this Python's
Unicode database in one pass over all code points (tens of milliseconds, cached)."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable

import numpy as np

from kairo_guard.core.content import strip_invisible

_MARKS = frozenset({"Mn", "Me"})


def changed_code_points(function: Callable[[str], str], stop: int) -> dict[int, str]:
    """Every code point below ``stop`` that ``function`` changes, with what it makes of
    it. ``function`` works character by character and never makes a line feed, so all
    the code points go through it in one call, separated by line feeds."""
    codes = np.arange(stop, dtype=np.uint32)
    codes = codes[codes != 0x0A]
    spaced = np.full(2 * len(codes), 0x0A, dtype=np.uint32)
    spaced[0::2] = codes
    text = function(spaced.tobytes().decode("utf-32-le", "surrogatepass"))
    out = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    ends = np.flatnonzero(out == 0x0A)
    if len(ends) != len(codes):
        raise RuntimeError("a per-character mapping made line feeds")
    starts = np.concatenate(([0], ends[:-1] + 1))
    single = ends - starts == 1
    changed = ~single
    changed[single] = out[starts[single]] != codes[single]
    return {int(codes[i]): text[starts[i] : ends[i]] for i in np.flatnonzero(changed).tolist()}


def invisible_code_points(start: int, stop: int) -> list[int]:
    """The code points from ``start`` to ``stop`` that :func:`strip_invisible` removes
    (wherever they stand), found by asking it about all of them at once."""
    every = np.arange(start, stop, dtype=np.uint32)
    kept = strip_invisible(every.tobytes().decode("utf-32-le", "surrogatepass"))
    removed = np.ones(stop - start, dtype=bool)
    kept_codes = np.frombuffer(kept.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    removed[kept_codes - start] = False
    return (np.flatnonzero(removed) + start).tolist()


CASED_STOP = 0x20000
"""Case folding changes no code point from here on (planes 0 and 1 hold every cased
letter; a test checks it for the running Python)."""
VISIBLE_FROM = 0x20000
""":func:`strip_invisible` removes no code point from here up to :data:`TAGS_START`,
nor from the end of that plane on (a test checks it)."""
TAGS_START = 0xE0000
MARKED_STOP = 0x20000
"""No code point from here on decomposes into a letter and marks (the canonical
decompositions above are single ideographs; a test checks it)."""


@functools.cache
def unmarked_letters() -> dict[int, str]:
    """Every character whose canonical decomposition holds combining marks (``é``,
    ``ё``, ``ά``), mapped to what is left without them, where that is one character
    (its base letter). A mark that stands alone is not a letter: normalization drops it
    with the separators."""
    marked = changed_code_points(functools.partial(unicodedata.normalize, "NFD"), MARKED_STOP)
    table = {}
    for code, nfd in marked.items():
        base = "".join(c for c in nfd if unicodedata.category(c) not in _MARKS)
        if len(base) == 1 and len(base) < len(nfd):
            table[code] = base
    return table


MERGED_LETTERS = {ord("i"): "l"}
"""Letters TR39 holds confusable that case folding parts: capital ``I`` looks like
``l`` (and like ``1``, which the look-alike table joins with ``l``) but folds to ``i``,
so a copy writing every ``l`` as ``I`` would fold to other text. Merged after folding:
``i`` and ``l`` count as one letter everywhere."""


@functools.cache
def final_letters() -> dict[int, str]:
    """What the last per-character step maps: a marked letter to its base letter, then
    :data:`MERGED_LETTERS`."""
    table = {code: MERGED_LETTERS.get(ord(base), base) for code, base in unmarked_letters().items()}
    table.update(MERGED_LETTERS)
    return table
