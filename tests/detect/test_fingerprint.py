"""The fingerprint net: laundered tenant content is caught at shared sinks, the rest passes.

Every record checked here carries an ``operator_public`` seal, which the policy allows at
``shared-training``: only :class:`kairo_guard.detect.fingerprint.FingerprintIndex` can block it.
Customer documents are synthetic prose (:func:`corpus.prose`); the false-positive
measurement uses text that ships with the installed packages (see ``tests/corpus.py``).
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from corpus import (
    LAUNDERERS,
    customer_corpus,
    excerpt,
    launder,
    prose,
    public_records,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from kg_testing import make_guard, sealed_record

from kairo_guard import CheckReport, Guard
from kairo_guard.detect.fingerprint import MIN_SHARED_FINGERPRINTS, Fingerprinter, K, W, normalize

RULE = "fingerprint.tenant-content"
ALLOWED = "allow.operator-public"
DOC = prose("acme-1")
"""The tenant document the laundering tests copy from (indexed for ``acme``)."""
FILLER = prose("public-filler", paragraphs=2)
"""Unrelated public text of the same style, in which excerpts are hidden."""
CONFIDENTIALITY = (
    "This message and any attachments are confidential and intended solely for the "
    "addressee. If you have received it in error, please notify the sender immediately "
    "and delete it from your system. Any unauthorised copying, disclosure or distribution "
    "of the material in this message is strictly forbidden."
)
COMMON_PHRASES = [
    "Thank you for your patience.",
    "Please find the invoice attached.",
    "Kind regards, the accounts team",
    "Let me know if you have any questions.",
    "as discussed in our meeting last week",
]
"""Stock phrases under 50 characters, all of which appear in ``acme``'s indexed note."""


def _check(guard: Guard, *records: str | dict[str, Any]) -> CheckReport:
    sealed = [
        sealed_record(
            guard, r if isinstance(r, dict) else {"text": r}, data_class="operator_public"
        )
        for r in records
    ]
    return guard.check(sealed, sink=guard.resolve_sink("s", kind="shared-training"))


def _assert_caught(guard: Guard, report: CheckReport, tenant: str, leaked: str) -> None:
    assert report.blocked == report.total, report.by_rule
    assert report.by_rule == {RULE: report.total}
    window = 20
    text = normalize(leaked)
    for violation in report.violations:
        assert violation.tenant == guard.keys.pseudonym(tenant)
        assert re.search(r"\d+ of \d+ fingerprints", violation.reason)
        reason = normalize(violation.reason)
        assert not any(text[i : i + window] in reason for i in range(len(text) - window))


def _embed(text: str, where: str, filler: str = FILLER) -> str:
    half = filler.find(" ", len(filler) // 2)
    return {
        "start": f"{text} {filler}",
        "middle": f"{filler[:half]} {text} {filler[half:]}",
        "end": f"{filler} {text}",
    }[where]


@pytest.fixture
def indexed(guard: Guard) -> Guard:
    """The guard with ``acme``'s and ``globex``'s documents indexed."""
    for i in range(4):
        guard.index_content("acme", {"title": f"note {i}", "body": prose(f"acme-{i}")})
        guard.index_content("globex", {"body": prose(f"globex-{i}")})
    return guard


EXCERPT = excerpt(DOC, 333, 200)
"""200 normalized characters from the middle of ``DOC``."""


def _short_doc_copy() -> str:
    """A short customer document: the first ~90 characters of ``DOC``."""
    return DOC[: DOC.find(" ", 90)]


COPIES: list[tuple[str, str]] = [
    ("exact-document", DOC),
    ("excerpt-at-start", _embed(EXCERPT, "start")),
    ("excerpt-in-middle", _embed(EXCERPT, "middle")),
    ("excerpt-at-end", _embed(EXCERPT, "end")),
    *((f"{name}-excerpt", _embed(fn(EXCERPT), "middle")) for name, fn in LAUNDERERS.items()),
    ("all-at-once", _embed(launder(EXCERPT, random.Random(7)), "middle")),
    # invisible characters slipped into every word would split it into letters
    ("nul-interleaved", _embed("\x00".join(EXCERPT), "middle")),
    ("utf16-read-as-utf8", _embed(EXCERPT.encode("utf-16-le").decode("utf-8"), "middle")),
    ("zero-width-in-words", _embed(re.sub(r"(\w)(?=\w)", "\\1\u200b", EXCERPT), "middle")),
    ("soft-hyphens-and-bom", _embed("\ufeff" + EXCERPT.replace("a", "a\u00ad"), "middle")),
]


@pytest.mark.parametrize(("case", "text"), COPIES, ids=[case for case, _ in COPIES])
def test_when_record_copies_tenant_text_laundered_then_blocked(
    indexed: Guard, case: str, text: str
) -> None:
    assert len(normalize(EXCERPT)) >= 200
    if case not in ("exact-document", "excerpt-at-start", "excerpt-at-end", "excerpt-in-middle"):
        assert EXCERPT not in text  # the laundering changed the characters
    _assert_caught(indexed, _check(indexed, text), "acme", EXCERPT)


def test_when_short_document_is_copied_whole_then_overlap_is_found_by_fraction(
    guard: Guard,
) -> None:
    short = _short_doc_copy()
    guard.index_content("acme", {"text": short})
    assert len(normalize(short)) < 200  # below the min_shared guarantee: the ratio decides
    found = guard.fingerprints.overlap({"text": short.upper()})
    assert found is not None
    assert (found.tenant, found.ratio) == ("acme", 1.0)


def test_when_short_document_is_copied_whole_then_blocked_at_shared_sink(guard: Guard) -> None:
    short = _short_doc_copy()
    guard.index_content("acme", {"text": short})
    _assert_caught(guard, _check(guard, short.upper()), "acme", short)


def test_when_record_is_unrelated_then_allowed_by_operator_seal(indexed: Guard) -> None:
    report = _check(indexed, FILLER, {"text": prose("public-2"), "n": 3})
    assert report.by_rule == {ALLOWED: 2}


def test_when_excerpt_is_split_across_two_records_then_each_is_blocked(indexed: Guard) -> None:
    long = excerpt(DOC, 120, 460)
    middle = long.find(" ", len(long) // 2)
    halves = [long[:middle], long[middle:]]
    assert all(len(normalize(h)) >= 200 for h in halves)
    report = _check(indexed, _embed(halves[0], "end"), FILLER, _embed(halves[1], "start"))
    assert (report.allowed, report.blocked) == (1, 2)
    assert [(v.index, v.rule) for v in report.violations] == [(0, RULE), (2, RULE)]
    assert {v.tenant for v in report.violations} == {indexed.keys.pseudonym("acme")}


def _pieces(text: str, n: int) -> list[str]:
    cuts = [0] + [text.find(" ", len(text) * i // n) for i in range(1, n)] + [len(text)]
    return [text[a:b].strip() for a, b in itertools.pairwise(cuts)]


def _nested_reversed(p: list[str]) -> dict[str, Any]:
    return {"z_body": p[0], "a_meta": {"note": p[1], "score": 0.5}, "m": FILLER[:80]}


def _list_items_shuffled(p: list[str]) -> dict[str, Any]:
    return {"comments": [p[3], p[0], p[4], p[2], p[1]], "ok": True}


def _fields_and_lists(p: list[str]) -> dict[str, Any]:
    return {
        "title": p[2],
        "body": {"paragraphs": [p[4], FILLER[:200], p[0]], "lang": "en"},
        "tags": ["invoice", p[1]],
        "summary": p[3],
    }


SHAPES = [("nested-reversed", 2, _nested_reversed)]
SHAPES += [("list-items-shuffled", 5, _list_items_shuffled)]
SHAPES += [("fields-and-lists", 5, _fields_and_lists)]


@pytest.mark.parametrize(
    ("parts", "shape"), [(n, f) for _, n, f in SHAPES], ids=[s[0] for s in SHAPES]
)
def test_when_excerpt_is_moved_between_json_fields_then_blocked(
    indexed: Guard, parts: int, shape: Callable[[list[str]], dict[str, Any]]
) -> None:
    text = excerpt(DOC, 40, 600)
    pieces = _pieces(text, parts)
    # each piece spans >= 89 normalized characters, so shares >= 1 fingerprint by itself
    assert all(len(normalize(p)) >= K + W - 1 for p in pieces)
    _assert_caught(indexed, _check(indexed, shape(pieces)), "acme", text)


@pytest.mark.parametrize("phrase", COMMON_PHRASES)
@pytest.mark.parametrize("where", ["alone", "start", "middle", "end"])
def test_when_record_shares_only_a_short_common_phrase_then_allowed(
    guard: Guard, phrase: str, where: str
) -> None:
    note = " ".join(f"{s} {phrase}" for s in prose("acme-phrases").split(". "))
    assert guard.index_content("acme", {"text": note}) > 0
    assert len(normalize(phrase)) < 50
    record = phrase if where == "alone" else _embed(phrase, where)
    assert _check(guard, record).by_rule == {ALLOWED: 1}


def test_when_unrelated_prose_of_the_same_style_then_allowed(indexed: Guard) -> None:
    records = [prose(f"public-{i}", paragraphs=1 + i % 3) for i in range(60)]
    assert _check(indexed, *records).by_rule == {ALLOWED: 60}


@pytest.mark.parametrize(
    ("tenants", "blocked"), [(1, True), (2, True), (4, True), (5, False), (8, False)]
)
def test_when_paragraph_is_indexed_for_n_tenants_then_blocked_below_boilerplate_threshold(
    guard: Guard, tenants: int, blocked: bool
) -> None:
    assert guard.fingerprints.boilerplate_tenants == 5
    names = [f"tenant-{i}" for i in range(tenants)]
    for name in names:
        guard.index_content(name, {"text": f"{prose(name)}\n\n{CONFIDENTIALITY}\n\nBest, {name}"})
    report = _check(guard, {"footer": CONFIDENTIALITY})
    if blocked:
        assert report.by_rule == {RULE: 1}
        assert report.violations[0].tenant in {guard.keys.pseudonym(n) for n in names}
    else:
        assert report.by_rule == {ALLOWED: 1}


def test_when_boilerplate_surrounds_a_tenant_excerpt_then_still_blocked(guard: Guard) -> None:
    names = [f"tenant-{i}" for i in range(6)]
    for name in names:
        guard.index_content(name, {"text": f"{prose(name)}\n\n{CONFIDENTIALITY}"})
    leaked = excerpt(prose("tenant-3"), 50, 200)
    report = _check(guard, f"{CONFIDENTIALITY} {leaked} {CONFIDENTIALITY}")
    _assert_caught(guard, report, "tenant-3", leaked)


def test_when_index_is_read_then_it_holds_64_bit_ints_and_no_text(
    indexed: Guard, tmp_path: Path
) -> None:
    rows = list(indexed.store.iter_fingerprints())
    assert len(rows) > 50
    assert {tenant for _, tenant in rows} == {"acme", "globex"}
    assert all(type(fp) is int and -(2**63) <= fp < 2**63 for fp, _ in rows)
    indexed.close()
    files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert files
    for doc in (prose("acme-0"), prose("globex-3")):
        windows = {w for i in range(0, len(doc) - 24, 8) for w in (doc[i : i + 24],)}
        windows |= {normalize(w) for w in windows}
        for path in files:
            blob = path.read_bytes()
            assert not [w for w in windows if w.encode() in blob], path


def test_when_key_differs_then_fingerprints_share_nothing(tmp_path: Path) -> None:
    texts = [DOC, FILLER, prose("globex-0")]
    one, same, other = (Fingerprinter(k) for k in (b"k" * 32, b"k" * 32, b"j" * 32))
    for text in texts:
        assert one.of_text(text) == same.of_text(text)
        assert one.of_text(text).isdisjoint(other.of_text(text))
    guards = [make_guard(tmp_path / name) for name in ("a", "b")]
    try:
        for g in guards:
            g.index_content("acme", {"text": DOC})
        a, b = ({fp for fp, _ in g.store.iter_fingerprints()} for g in guards)
        assert a
        assert b
        assert a.isdisjoint(b)
    finally:
        for g in guards:
            g.close()


def test_when_tenant_fingerprints_are_deleted_then_its_excerpts_pass_and_others_block(
    indexed: Guard,
) -> None:
    mine = _embed(EXCERPT, "middle")
    theirs = _embed(excerpt(prose("globex-2"), 10, 250), "middle")
    assert _check(indexed, mine, theirs).by_rule == {RULE: 2}
    assert indexed.store.delete_fingerprints("acme") > 0
    assert {t for _, t in indexed.store.iter_fingerprints()} == {"globex"}
    report = _check(indexed, mine, theirs)
    assert report.by_rule == {ALLOWED: 1, RULE: 1}
    assert [(v.index, v.tenant) for v in report.violations] == [
        (1, indexed.keys.pseudonym("globex"))
    ]


# -- the winnowing guarantee -------------------------------------------------------------

_FP = Fingerprinter(b"property-test-key-0123456789")
_WORD = st.text(
    alphabet=st.characters(categories=("Ll", "Lu", "Lo", "Nd")), min_size=1, max_size=12
)
_SEP = st.sampled_from([" ", ", ", ". ", "\n", " - ", "\t", "'", "\u3000", "  "])


def _has_repeated_kgram(normalized: str) -> bool:
    grams = [normalized[i : i + K] for i in range(len(normalized) - K + 1)]
    return len(set(grams)) < len(grams)


@pytest.mark.parametrize(
    ("span", "at_least"), [(K + W - 1, 1), (200, MIN_SHARED_FINGERPRINTS), (400, 8)]
)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_when_excerpt_spans_n_normalized_chars_then_it_shares_the_guaranteed_fingerprints(
    span: int, at_least: int, data: st.DataObject
) -> None:
    # every (word, separator) pair normalizes to at least 2 characters
    words = st.lists(st.tuples(_WORD, _SEP), min_size=span // 2 + 1, max_size=span // 2 + 300)
    text = "".join(w + s for w, s in data.draw(words, label="words"))
    source = normalize(text)
    assume(len(source) >= span + 2)
    # the guarantee counts selected positions; a repeated k-gram repeats a fingerprint
    assume(not _has_repeated_kgram(source))
    start = data.draw(st.integers(0, len(source) - span), label="start")
    length = data.draw(st.integers(span, len(source) - start), label="length")
    piece = source[start : start + length].strip()
    assume(len(piece) >= span)
    guaranteed = (len(piece) - K + 1) // W
    assert guaranteed >= at_least
    assert len(_FP.of_text(piece) & _FP.of_text(text)) >= guaranteed


def test_when_tenant_text_is_periodic_then_an_excerpt_still_shares_a_fingerprint() -> None:
    """Repeated 42-letter chunks count once (documented): at least one is shared."""
    table = "0.00 EUR | 0.00 EUR | " * 40  # e.g. a ledger of empty rows
    piece = excerpt(table, 5, 200)
    assert len(normalize(piece)) >= K + W - 1
    assert len(_FP.of_text(piece) & _FP.of_text(table)) >= 1


# -- false positives on real public text ---------------------------------------------------

NEGATIVES = 10_000
MAX_FALSE_POSITIVE_RATE = 0.001


def test_when_10000_unrelated_public_records_are_checked_then_at_most_0_1_percent_are_blocked(
    guard: Guard,
) -> None:
    docs = customer_corpus(docs_per_tenant=50)
    for tenant, texts in docs.items():
        assert len(texts) >= 50, tenant
        for text in texts:
            guard.index_content(tenant, {"text": text})
    records = public_records(NEGATIVES)
    assert len(records) == NEGATIVES
    assert all(200 <= len(r) <= 1000 for r in records)
    overlap = guard.fingerprints.overlap
    hits = [(r[:80], found) for r in records if (found := overlap({"text": r})) is not None]
    assert len(hits) / len(records) <= MAX_FALSE_POSITIVE_RATE, hits[:5]
    # the same index does catch the customer documents: 200-character excerpts in public text
    for i, (tenant, texts) in enumerate(sorted(docs.items())):
        for j, text in enumerate(texts[:20]):
            piece = excerpt(text, 0, 200)
            assert len(normalize(piece)) >= 150  # letters and digits: prose is some 80%
            record = {"text": f"{records[i * 20 + j]} {piece} {records[-1 - j]}"}
            found = overlap(record)
            assert found is not None, (tenant, j)
            assert found.tenant == tenant


DEFAULT_IGNORABLE = [
    0x00AD, 0x034F, 0x061C, *range(0x115F, 0x1161), *range(0x17B4, 0x17B6),
    *range(0x180B, 0x1810), *range(0x200B, 0x2010), *range(0x202A, 0x202F),
    *range(0x2060, 0x2070), 0x3164, *range(0xFE00, 0xFE10), 0xFEFF, 0xFFA0,
    *range(0xFFF0, 0xFFF9), *range(0x1BCA0, 0x1BCA4), *range(0x1D173, 0x1D17B),
    *range(0xE0000, 0xE1000),
]  # fmt: skip
"""Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt, 15.0): not a
property Python's unicodedata exposes, so listed."""


def test_every_default_ignorable_code_point_is_removed() -> None:
    kept = [f"U+{code:04X}" for code in DEFAULT_IGNORABLE if normalize(f"a{chr(code)}b") != "ab"]
    assert kept == []


@pytest.mark.parametrize("hidden", ["\u034f", "\ufe0f", "\U000e0100", "\u3164", "\u180b"])
def test_a_copy_with_a_default_ignorable_every_20_characters_is_caught(
    guard: Guard, hidden: str
) -> None:
    document = prose("ignorable-copy", paragraphs=2)
    guard.index_content("acme", {"text": document})
    copied = "".join(c + hidden if i % 20 == 19 else c for i, c in enumerate(document))
    found = guard.fingerprints.overlap({"text": copied})
    assert found is not None
    assert found.tenant == "acme"
    assert guard.fingerprints.overlap({"text": prose("ignorable-other", paragraphs=2)}) is None


def test_every_invisible_character_of_this_python_is_removed_as_separators_are() -> None:
    import sys
    import unicodedata

    def invisible(c: str) -> bool:
        category = unicodedata.category(c)
        return category == "Cf" or (category == "Cc" and not c.isspace())

    for code in range(sys.maxunicode + 1):
        c = chr(code)
        if invisible(c):
            assert normalize(f"a{c}b") == "ab", f"U+{code:04X} is not removed"
    assert normalize("a\tb\nc\u00a0d-e.f\u0336g") == "abcdefg"  # separators and marks too
