"""What a text could hold at all, found in one pass: the prefilters of the PII gate and
the customer identifier index.

:func:`shapes` answers, for a text, the questions the gate's and the index's regular
expressions would otherwise each scan the text for (digits, an ``@``, a long token, the
start of an IBAN, an SSN's shape, a phone number's cluster of digits), in one pass of
a small C extension built at install time (``_shapes.c``); without it, the same
answers from the regular expressions below, which are the specification the extension
is tested against. Each answer is a necessary condition of a pattern: a text it rules
out holds no match, so it is passed over without running the pattern.
"""

from __future__ import annotations

import re
from typing import NamedTuple

try:
    import kairo_guard.detect._shapes as native_shapes  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - built at install; the expressions answer the same
    native_shapes = None

DIGIT = re.compile(r"\d")
RUN = re.compile(r"[\w+/=.-]+")
"""A run of the characters a key or token is made of (``\\w``, ``+ / = . -``)."""
IBAN_START = re.compile(r"[A-Z]{2}[0-9]{2}", re.IGNORECASE)
SSN_SHAPE = re.compile(r"[0-9]{3}[- .]?[0-9]{2}[- .]?[0-9]{4}")
CLUSTER = re.compile(r"\d[\d \t()./-]{8,24}\d")
"""What every phone number match holds, without its boundary checks."""
PHONE_RUN = re.compile(r"[\d \t()./+-]+")
"""A run of the characters a phone number's match is made of."""


class Shapes(NamedTuple):
    """What :func:`shapes` found in a text."""

    digits: int
    """Unicode decimal digits (``\\d``)."""
    at: bool
    """An ``@``."""
    longest_run: int
    """The longest run of ``[\\w+/=.-]``."""
    iban: bool
    """Two letters then two ASCII digits (the extension counts any alphabetic character
    as a letter: a superset of ``[A-Z]`` under ``IGNORECASE``)."""
    ssn: bool
    """``[0-9]{3}[- .]?[0-9]{2}[- .]?[0-9]{4}``."""
    cluster: bool
    """:data:`CLUSTER`."""


def shapes(text: str) -> Shapes:
    """The shapes of ``text`` (see :class:`Shapes`)."""
    if native_shapes is not None:
        return Shapes(*native_shapes.shapes(text))
    return shapes_python(text)


def shapes_python(text: str) -> Shapes:
    """:func:`shapes` from the regular expressions: the specification."""
    return Shapes(
        len(DIGIT.findall(text)),
        "@" in text,
        max((len(m) for m in RUN.findall(text)), default=0),
        IBAN_START.search(text) is not None,
        SSN_SHAPE.search(text) is not None,
        CLUSTER.search(text) is not None,
    )


def runs(text: str, minimum: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each maximal run of ``[\\w+/=.-]`` in ``text`` at least
    ``minimum`` characters long."""
    if native_shapes is not None:
        found: list[tuple[int, int]] = native_shapes.runs(text, minimum)
        return found
    return [m.span() for m in RUN.finditer(text) if m.end() - m.start() >= minimum]


def phone_runs(text: str, minimum: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each maximal run of ``[\\d \\t()./+-]`` in ``text`` at
    least ``minimum`` characters long that holds two digits (``\\d``): where a phone
    number's match can be (it is made of those characters and begins and ends with a
    digit). The native scanner looks at a fraction of the characters of prose."""
    if native_shapes is not None:
        found: list[tuple[int, int]] = native_shapes.phone_runs(text, minimum)
        return found
    return phone_runs_python(text, minimum)


def phone_runs_python(text: str, minimum: int) -> list[tuple[int, int]]:
    """:func:`phone_runs` from the regular expressions: the specification."""
    return [
        m.span()
        for m in PHONE_RUN.finditer(text)
        if m.end() - m.start() >= minimum and len(DIGIT.findall(m.group())) >= 2
    ]
