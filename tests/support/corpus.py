"""Text corpora and laundering for the fingerprint tests and ``eval_fingerprints.py``.

Two sources of text, both deterministic:

* :func:`prose`: synthetic customer documents (support tickets, contract notes), composed
  word by word from a seeded generator, so that two seeds share no 50-character span
  except by astronomically unlikely chance.
* Text that ships with the installed packages (this interpreter's ``site-packages``):
  :func:`customer_corpus` takes the long docstrings of a few packages as four tenants'
  "customer" documents; :func:`public_records` chunks *every other* package's docstrings,
  licences, METADATA, README and ``.txt``/``.rst``/``.md`` files into records of 200 to
  1,000 characters, the unrelated public text of a false-positive measurement. None of
  the customer packages is vendored by another installed package, and files whose bytes
  equal a customer file's are skipped as well, so any hit is a false positive.

The launderers (:data:`LAUNDERERS`) rewrite text the ways a copy gets disguised without
changing what it says: case, whitespace, re-wrapping, punctuation, Unicode compatibility
forms.
"""

from __future__ import annotations

import hashlib
import inspect
import random
import re
import sysconfig
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

from kairo_guard.detect.fingerprint import normalize

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
# Packages whose docstrings no other installed package copies (typer, for one, copies
# click): copies would be true positives in the "unrelated" corpus.
CUSTOMER_PACKAGES = {"acme": "hypothesis", "globex": "anyio", "initech": "sortedcontainers"}
"""Tenant -> installed package whose docstrings are that tenant's customer documents."""
CUSTOMER_DOC_MIN_CHARS = 400
RECORD_MIN_CHARS = 200
RECORD_MAX_CHARS = 1000
_TEXT_FILE = re.compile(
    r"(?i)^(licen[cs]e|copying|notice|authors|readme|metadata)([.\-_].*)?$|\.(txt|rst|md)$"
)
_NOT_PROSE = {"RECORD", "entry_points.txt", "top_level.txt", "INSTALLER", "REQUESTED"}
_TRIPLE_QUOTED = re.compile(r"(?s)(\"\"\"|''')(.*?)\1")

# -- synthetic prose --------------------------------------------------------------------


def _vocabulary(words: str) -> tuple[str, ...]:
    return tuple(words.split())


_WORDS = _vocabulary(
    "account adjustment agreement allocation amendment analysis appendix approval archive "
    "audit backlog balance baseline billing branch budget calendar campaign capacity "
    "carrier catalogue certificate channel checklist claim clause client commitment "
    "compliance component configuration consignment contact contract correction coverage "
    "credit customer dashboard deadline delivery deposit deviation discount dispatch "
    "dispute document draft escalation estimate exception expense extension facility "
    "feedback filing forecast freight guarantee handover incident inventory invoice "
    "ledger licence logistics maintenance margin meeting milestone migration notice "
    "obligation onboarding order outage package partner payment penalty pipeline policy "
    "portfolio premium pricing procurement project proposal quarter quotation rebate "
    "receipt reconciliation refund region register release remittance renewal report "
    "request requirement reservation retention revenue review risk roadmap schedule "
    "settlement shipment signature specification statement subscription supplier "
    "surcharge tariff template tender ticket timeline transfer upgrade vendor voucher "
    "warehouse warranty workflow"
)
_VERBS = _vocabulary(
    "approved archived asked blocked booked cancelled changed checked confirmed covered "
    "delayed delivered disputed doubled escalated expected extended flagged forwarded "
    "held invoiced logged merged missed moved noted opened paid postponed processed "
    "queried raised received reduced refunded rejected renewed reopened replaced "
    "requested resolved returned reviewed scheduled sent settled shipped signed split "
    "submitted suspended updated verified waived withdrew"
)
_GLUE = _vocabulary(
    "a about after against all an and any as at because before but by during each for "
    "from if in into its last most next no not of on once only or our per since so than "
    "that the their this to under until upon when while with within without"
)
_NAMES = _vocabulary(
    "Abebe Akira Alvarez Amara Beatriz Bjorn Chen Chiara Dmitri Eamon Farah Fatima Goran "
    "Hana Ines Ivan Jalen Kavya Keiko Lars Leila Lucas Mateo Mei Nadia Niamh Olumide Omar "
    "Priya Quentin Rafael Rosa Sanjay Sofia Tariq Tomasz Uma Valentina Wei Yara Yusuf "
    "Zofia"
)


def _sentence(rng: random.Random) -> str:
    words: list[str] = []
    for _ in range(rng.randint(7, 19)):
        roll = rng.random()
        if roll < 0.34:
            words.append(rng.choice(_WORDS))
        elif roll < 0.52:
            words.append(rng.choice(_VERBS))
        elif roll < 0.9:
            words.append(rng.choice(_GLUE))
        elif roll < 0.95:
            words.append(rng.choice(_NAMES))
        else:
            words.append(rng.choice((f"#{rng.randint(1000, 99999)}", f"{rng.randint(2, 480)}")))
    if len(words) > 6 and rng.random() < 0.45:
        words[rng.randint(2, len(words) - 3)] += ","
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice(".....?!")


def prose(seed: int | str, paragraphs: int = 4) -> str:
    """Return a deterministic customer document of ``paragraphs`` paragraphs."""
    rng = random.Random(f"prose:{seed}")
    return "\n\n".join(
        " ".join(_sentence(rng) for _ in range(rng.randint(4, 7))) for _ in range(paragraphs)
    )


# -- laundering -------------------------------------------------------------------------


def swap_case(text: str) -> str:
    """Swap the case of every letter."""
    return text.swapcase()


def random_case(text: str, seed: int = 0) -> str:
    """Upper-case a random half of the letters."""
    rng = random.Random(seed)
    return "".join(c.upper() if rng.random() < 0.5 else c for c in text)


def spread_whitespace(text: str) -> str:
    """Replace single spaces by runs of spaces, tabs and line ends."""
    runs = ("  ", "\t", " \n ", "\u00a0", "\r\n")
    return re.sub(r" ", lambda m: runs[m.start() % len(runs)], text)


def rewrap(text: str, width: int = 60) -> str:
    """Re-wrap the text into lines of at most ``width`` characters, indented."""
    return "\n".join(textwrap.wrap(text, width=width, initial_indent="> ", subsequent_indent="  "))


def semicolons(text: str) -> str:
    """Commas to semicolons, full stops to exclamation marks."""
    return text.replace(",", ";").replace(".", "!")


def curly_quotes(text: str) -> str:
    """Quote every third word with typographic quotes."""
    words = text.split(" ")
    return " ".join(f"\u201c{w}\u201d" if i % 3 == 0 else w for i, w in enumerate(words))


def dashes(text: str) -> str:
    """Join every other pair of words with an em dash, punctuation to dashes."""
    words = re.sub(r"[,.;:!?]", " -", text).split(" ")
    return "".join(w + ("\u2014" if i % 2 else " ") for i, w in enumerate(words)).strip()


def fullwidth(text: str) -> str:
    """ASCII letters and digits to their fullwidth compatibility forms (U+FF01..)."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def ligatures(text: str) -> str:
    """Letter pairs to ligature code points, and a few letters to compatibility forms."""
    for plain, fancy in (("ffi", "\ufb03"), ("ff", "\ufb00"), ("fi", "\ufb01"), ("fl", "\ufb02")):
        text = text.replace(plain, fancy)
    return text.replace("e", "\u212f").replace("K", "\u212a").replace("h", "\u210e")


Launderer = Callable[[str], str]
LAUNDERERS: dict[str, Launderer] = {
    "upper": str.upper,
    "lower": str.lower,
    "title": str.title,
    "swapcase": swap_case,
    "random-case": random_case,
    "whitespace": spread_whitespace,
    "rewrap-60": rewrap,
    "semicolons": semicolons,
    "curly-quotes": curly_quotes,
    "dashes": dashes,
    "fullwidth": fullwidth,
    "ligatures": ligatures,
}


def launder(text: str, rng: random.Random) -> str:
    """Apply a random case change, a punctuation change and a whitespace change."""
    case = rng.choice((str.upper, str.lower, str.title, swap_case, random_case))
    punct = rng.choice((semicolons, curly_quotes, dashes))
    space = rng.choice((spread_whitespace, rewrap))
    return space(punct(case(text)))


def excerpt(text: str, start: int, length: int) -> str:
    """Return the span of ``text`` from ``start`` whose normalized form has ``length`` chars.

    The span is grown until it normalizes to at least ``length`` characters, so the
    length is what the winnowing guarantee is stated in.
    """
    end = start + length
    while len(normalize(text[start:end])) < length and end < len(text):
        end += max(1, length - len(normalize(text[start:end])))
    return text[start:end]


# -- text that ships with the installed packages ---------------------------------------


def _docstrings(path: Path, min_chars: int) -> list[str]:
    source = path.read_text("utf-8", errors="replace")
    return [
        inspect.cleandoc(m.group(2))
        for m in _TRIPLE_QUOTED.finditer(source)
        if len(m.group(2).strip()) >= min_chars
    ]


def _customer_files() -> Iterator[Path]:
    for package in CUSTOMER_PACKAGES.values():
        yield from sorted((SITE_PACKAGES / package).rglob("*.py"))


def customer_corpus(docs_per_tenant: int = 50) -> dict[str, list[str]]:
    """Return, per tenant, its customer documents: long docstrings of one package."""
    corpus: dict[str, list[str]] = {}
    for tenant, package in CUSTOMER_PACKAGES.items():
        docs = [
            doc
            for path in sorted((SITE_PACKAGES / package).rglob("*.py"))
            for doc in _docstrings(path, CUSTOMER_DOC_MIN_CHARS)
        ]
        corpus[tenant] = docs[:docs_per_tenant]
    return corpus


def _is_customer_path(rel: Path) -> bool:
    for part in rel.parts:
        for package in CUSTOMER_PACKAGES.values():
            if part == package or part.startswith(f"{package}-") or part == f"{package}.py":
                return True
    return False


def public_texts() -> Iterator[tuple[str, str]]:
    """Yield ``(relative path, text)`` of the public corpus, files in sorted order."""
    customer = {hashlib.sha256(p.read_bytes()).digest() for p in _customer_files()}
    seen: set[bytes] = set()
    for path in sorted(SITE_PACKAGES.rglob("*")):
        rel = path.relative_to(SITE_PACKAGES)
        if not path.is_file() or "__pycache__" in rel.parts or _is_customer_path(rel):
            continue
        is_py = path.suffix == ".py"
        if not is_py and (path.name in _NOT_PROSE or not _TEXT_FILE.search(path.name)):
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).digest()
        if digest in customer or digest in seen:
            continue
        seen.add(digest)
        if is_py:
            text = "\n\n".join(_docstrings(path, 40))
        else:
            text = data.decode("utf-8", errors="replace")
        if len(text) >= RECORD_MIN_CHARS:
            yield str(rel), text


def chunks(text: str, rng: random.Random) -> Iterator[str]:
    """Cut ``text`` into pieces of 200 to 1,000 characters, at whitespace where possible."""
    pos = 0
    while len(text) - pos >= RECORD_MIN_CHARS:
        limit = pos + rng.randint(RECORD_MIN_CHARS, RECORD_MAX_CHARS)
        cut = text.rfind(" ", pos + RECORD_MIN_CHARS, limit)
        end = min(len(text), limit if cut < 0 else cut)
        piece = text[pos:end].strip()
        if len(piece) >= RECORD_MIN_CHARS:
            yield piece
        pos = end


def public_records(n: int, seed: int = 0) -> list[str]:
    """Return ``n`` public records (or all there are), sampled evenly from every file."""
    rng = random.Random(f"chunks:{seed}")
    records = [piece for _, text in public_texts() for piece in chunks(text, rng)]
    if len(records) <= n:
        return records
    return [
        records[i] for i in sorted(random.Random(f"sample:{seed}").sample(range(len(records)), n))
    ]
