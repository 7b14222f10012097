"""Cheap text checks for the PII gate: which texts need NER or a recognizer, where
to chunk, where phone numbers can be, entropy.

Pure Python with precompiled patterns, so the gate can decide before it pays for spaCy
or a presidio recognizer. Each prefilter is a necessary condition of the recognizer's
own patterns, so skipping a recognizer on a text it rejects never loses a finding.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from kairo_guard.detect.shapes import shapes

#: Finding codes of a text the gate could not analyse: it failed, or the text is over
#: the gate's bounds. Either blocks.
GUARD_ERROR = "GUARD_ERROR"
GUARD_TOO_LONG = "GUARD_TOO_LONG"

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

#: Fewest digits in a phone number the gate looks for: 7, a subscriber number with
#: its area code. Shorter valid numbers exist (4-6 digit German numbers) but in
#: telemetry they are indistinguishable from counts, ports and ids.
MIN_PHONE_DIGITS = 7
#: Fewest digits of a card number presidio's card pattern can match (4+3+3+3).
MIN_CARD_DIGITS = 13
# A cluster of digits that one phone number (with an extension) could span, a superset
# of what phonenumbers' matcher reads as one number: digit runs joined by up to 4
# characters of its punctuation (dashes, slashes, dots, brackets, spaces, "x", ...) or
# by an extension marker (" ext. ", " x", "#", ";ext=", ...). Anything else (letters,
# ":", "=", ",") ends a cluster, so hex ids, times and key=value pairs break apart.
_PHONE_PUNCTUATION = (
    r"[-x\u2010-\u2015\u2212\u30fc\uff0d-\uff0f \u00a0\u00ad\u200b\u2060\u3000"
    r"()\uff08\uff09\uff3b\uff3d.\[\]/~\u2053\u223c\uff5e]"
)
_PHONE_GAP = (
    rf"(?:{_PHONE_PUNCTUATION}{{1,4}}"
    r"|[\s,]{0,40}(?:e?xt(?:ensi(?:\xf3?|o\u0301))?n?|\uff45?\uff58\uff54\uff4e?"
    r"|\u0434\u043e\u0431|anexo|[x\uff58#\uff03~\uff5e]|int|\uff49\uff4e\uff54)"
    r"[:.\uff0e]?[\s,-]{0,40}|;ext=|[- ]{1,40})"
)
_DIGIT_CLUSTER = re.compile(rf"\d+(?:{_PHONE_GAP}\d+)*", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
# What phonenumbers may read before a number's first digit: up to two lead characters
# ("+", "(", ...), each followed by up to 4 punctuation characters; then one more
# character, whose kind decides whether the number stands alone (not glued to a word).
_PHONE_LEAD = re.compile(rf"(?:{_PHONE_PUNCTUATION}|[+\uff0b]){{0,10}}$")
# After the last digit: the character that must not be a letter, and ":dd", which
# marks a time stamp rather than a number.
_PHONE_TAIL = 4
#: More characters of phone windows than this in one text is more matching than the
#: per-text time bound allows (phonenumbers costs up to ~0.15 ms a character over 8
#: regions): such a text is refused (GUARD_TOO_LONG). About 15 phone numbers.
MAX_PHONE_WINDOW_CHARS = 300
# Necessary conditions of presidio's patterns (and of our secret patterns), with the
# flags presidio compiles them with (case-insensitive: [A-Z] also matches a-z).
# A URL with a path: "/" follows the top-level domain (letters), or its port.
_TLD_THEN_PATH = re.compile(r"\.[a-z]{2,}(?::[0-9]{1,5})?/", re.IGNORECASE)
# IPv4 (also inside IPv4-mapped IPv6): a dotted quad; IPv6: "::" or two hex digits
# around a colon.
_IP_SHAPE = re.compile(r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]|::|[0-9a-f]:[0-9a-f]", re.I)
SECRET_RUN_MIN = 15
r"""Every pattern of the secret recognizer matches inside a run of at least this many
characters of ``[\w+/=.-]`` (the shortest: a Slack token, ``xoxb-`` and ten more).
Every pattern of presidio's US SSN recognizer (5-4, 3-6, 3-2-4 with -, space or ., and
9 in a row) matches inside ``[0-9]{3}[- .]?[0-9]{2}[- .]?[0-9]{4}``."""


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


_NEVER_IN_NAMES = re.compile(r"[0-9_=/:@#<>{}\[\]|\\]")
"""Characters no personal name holds: an NER "person" with one is an identifier
(``finish_reason``, ``sha256 9f...``, ``p95=168``), not a name."""


def could_be_a_name(text: str) -> bool:
    """False for an NER PERSON span none of whose words could be part of a name (each
    holds a character no name holds).

    A span with one plausible word stays whole (``user:Maria`` is still a person), and
    lowercase or single-word spans stay too (a name may be written in lowercase): the
    gate errs on the side of blocking.
    """
    return any(
        _NEVER_IN_NAMES.search(word) is None and any(c.isalpha() for c in word)
        for word in text.split()
    )


def phone_windows(
    text: str, min_digits: int = MIN_PHONE_DIGITS, skip: Sequence[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    """Return the ``[start, end)`` windows of ``text`` where a phone number can be.

    A window is a cluster of digits holding at least ``min_digits`` digits, with the
    context phonenumbers reads around a number (lead characters before it, the next
    characters after it). Windows do not overlap and never start or end inside a
    cluster, so matching in each window finds what matching in the whole text finds.
    Clusters lying wholly inside a ``skip`` span are left out.
    """
    n = len(text)
    windows: list[tuple[int, int]] = []
    for match in _DIGIT_CLUSTER.finditer(text):
        if len(_DIGIT.findall(match.group())) < min_digits:
            continue
        if any(a <= match.start() and match.end() <= b for a, b in skip):
            continue
        first = match.start()
        lead = _PHONE_LEAD.search(text, max(0, first - 10), first)
        start = max(0, first - (lead.end() - lead.start() if lead else 0) - 1)
        end = min(n, match.end() + _PHONE_TAIL)
        if windows and start <= windows[-1][1]:
            start = windows.pop()[0]
        windows.append((start, end))
    return windows


def phone_window_chars(text: str) -> int:
    """Return how many characters of ``text`` lie in its :func:`phone_windows`."""
    return sum(end - start for start, end in phone_windows(text))


def possible_entities(text: str, entities: Iterable[str]) -> list[str]:
    """Return the entity types in ``entities`` that ``text`` could hold at all.

    Each test is a necessary condition of the recognizer's patterns: an email address
    has an ``@``; a URL with a path a top-level domain (and port) then ``/``; an IP address a
    dotted quad, ``::`` or hex digits around a ``:``; an IBAN two letters then two
    digits; a card 13 digits; a phone number a cluster of 7 digits; a US social
    security number 9 digits grouped 3-2-4 (or 5-4, 3-6, 9); a secret a 15-character
    token. Names are left to the NER check.
    """
    found = shapes(text)  # one pass for the tests below (a C extension where built)
    digits = found.digits
    checks = {
        "EMAIL_ADDRESS": lambda: found.at,
        "URL": lambda: _TLD_THEN_PATH.search(text) is not None,
        "IP_ADDRESS": lambda: _IP_SHAPE.search(text) is not None,
        "IBAN_CODE": lambda: digits >= 2 and found.iban,
        "CREDIT_CARD": lambda: digits >= MIN_CARD_DIGITS,
        "PHONE_NUMBER": lambda: digits >= MIN_PHONE_DIGITS and bool(phone_windows(text)),
        "API_KEY": lambda: found.longest_run >= SECRET_RUN_MIN,
        "US_SSN": lambda: digits >= 9 and found.ssn,
    }
    return [e for e in entities if e not in checks or checks[e]()]


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
