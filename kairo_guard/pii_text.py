"""Cheap text checks for the PII gate: which texts need NER, where to chunk, entropy.

Pure Python with precompiled patterns, so the gate can decide before it pays for spaCy.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

#: Words that are telemetry vocabulary, never part of a person's name. A text whose
#: every word is in this set (or is not a word at all) skips NER. Compared lowercased.
NAME_FREE_WORDS: frozenset[str] = frozenset(
    {
        "aborted", "cancelled", "canceled", "connect", "delete", "error", "failed",
        "false", "get", "gb", "head", "http", "https", "internal", "kb", "mb", "ms",
        "none", "ns", "null", "ok", "options", "patch", "post", "put", "retry",
        "status", "success", "timeout", "true", "unavailable", "unknown", "us",
    }
)  # fmt: skip

_WORD = re.compile(r"\w+")
# A word that could be (part of) a name: two or more letters, no digit, no underscore.
# Identifiers such as ``latency_ms``, ``v1`` or ``HTTP_503`` are not names.
_NAME_LIKE = re.compile(r"[^\W\d_]{2,}")
_BREAKS = ("\n", ". ", " ")


def may_contain_name(text: str, name_free_words: Iterable[str] = NAME_FREE_WORDS) -> bool:
    """Return whether ``text`` has a word that NER could tag as a person's name.

    Texts made only of numbers, punctuation, single letters, identifiers and known
    enum words cannot hold a name, so the gate skips NER on them.
    """
    known = name_free_words if isinstance(name_free_words, frozenset) else set(name_free_words)
    for match in _WORD.finditer(text):
        word = match.group()
        if _NAME_LIKE.fullmatch(word) and word.lower() not in known:
            return True
    return False


def chunk_bounds(text: str, size: int) -> list[tuple[int, int]]:
    """Split ``text`` into consecutive ``[start, end)`` spans of at most ``size`` chars.

    Spans cover the text exactly, without overlap, so their docs can be joined back into
    one doc with the original offsets. Each cut is made after a newline, else after a
    sentence end, else after a space, in the second half of the window, so that names
    are rarely cut in two; text with no such break (adversarial input) is cut hard.
    This bounds spaCy's tokenizer, whose cost grows faster than linearly on long
    unbroken strings such as ``"a:" * 16000``.
    """
    if size < 2:
        raise ValueError("chunk size must be at least 2")
    bounds: list[tuple[int, int]] = []
    start, n = 0, len(text)
    while n - start > size:
        end = start + size
        cut = -1
        for brk in _BREAKS:
            found = text.rfind(brk, start + size // 2, end)
            if found != -1:
                cut = found + len(brk)
                break
        if cut <= start:
            cut = end
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return bounds


def shannon_entropy(token: str) -> float:
    """Return the Shannon entropy of ``token`` in bits per character (0 when empty)."""
    if not token:
        return 0.0
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())
