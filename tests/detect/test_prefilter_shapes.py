"""The one-pass prefilter extension answers as its regular expressions do: equal where
it is exact, a superset where it says so (the start of an IBAN), never narrower."""

from __future__ import annotations

import pytest
from corpus import prose
from hypothesis import given, settings
from hypothesis import strategies as st

from kairo_guard.detect import shapes as shapes_module
from kairo_guard.detect.shapes import RUN, runs, shapes, shapes_python

pytestmark = pytest.mark.storeless  # opens no state store: runs once, in the main pass

native = getattr(shapes_module, "native_shapes", None)
needs_native = pytest.mark.skipif(native is None, reason="the extension is not built")

ALPHABET = (
    "0123456789 \t()./-+=_@:abcxyzABCXYZ"
    "\u0663\u096d\uff15"  # Arabic-Indic, Devanagari and fullwidth digits: \d, not [0-9]
    "\u017f\u212a\u0131\u0130"  # long s, Kelvin sign, dotless i, dotted I: [A-Z] under I
    "\u00e9\u00b2\u00bd\u4e2d\u200b\n"  # é, superscript two, one half, a CJK letter, ZWSP
)


def _agree(text: str) -> None:
    fast, spec = shapes(text), shapes_python(text)
    assert fast._replace(iban=False) == spec._replace(iban=False), text
    assert fast.iban or not spec.iban, text  # a superset: never misses an IBAN's start
    assert runs(text, 15) == [m.span() for m in RUN.finditer(text) if len(m.group()) >= 15]


@needs_native
@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=80))
def test_the_extension_answers_as_the_expressions_do(text: str) -> None:
    _agree(text)


@needs_native
@pytest.mark.parametrize(
    "text",
    [
        "",
        "call 415 555 0132 now",
        "SSN 123-45-6789, 123 45 6789, 123.45.6789, 12345-6789, 123-456789, 123456789",
        "IBAN DE89 3704 0044 0532 0130 00",
        "token sk-proj-aB3dE5fG7hI9jK1lM3nO5pQ7 and xoxb-1234567890",
        "a" * 14 + " " + "b" * 15 + "@" + "c" * 40,
        "1" + " " * 30 + "2",  # digits too far apart for a phone number's cluster
        "\u0663" * 12,
        prose("shapes", paragraphs=3),
    ],
)
def test_known_texts_agree(text: str) -> None:
    _agree(text)


def test_shapes_of_a_plain_sentence() -> None:
    found = shapes("Mail ops@example.org or call +1 (415) 555-0132; ref DE89xx.")
    assert found.at
    assert found.cluster
    assert found.iban
    assert not found.ssn
    assert found.digits == 13


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789 \t()./+-_ab.\u0663\n", max_size=90))
def test_phone_numbers_found_run_by_run_are_the_ones_found_in_the_whole_text(text: str) -> None:
    from kairo_guard.detect import identifiers

    whole = [m.span() for m in identifiers._PHONE.finditer(text)]
    assert [m.span() for m in identifiers._phone_matches(text)] == whole


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=60))
def test_ascii_text_loses_exactly_the_invisible_characters_the_expression_removes(
    text: str,
) -> None:
    from kairo_guard.core import content

    assert content.strip_invisible(text) == content._INVISIBLE.sub("", text)


@needs_native
@settings(max_examples=2000, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab=+/.-_ \n\u00e9\u4e2d\U0001f600,"), max_size=400),
    st.integers(min_value=-1, max_value=60),
)
def test_the_runs_found_by_sampling_are_every_run_the_expression_finds(
    text: str, minimum: int
) -> None:
    # the scanner looks at every minimum-th character first: runs of each length, in
    # 1-, 2- and 4-byte strings, at the ends of the text
    assert runs(text, minimum) == [
        m.span() for m in RUN.finditer(text) if len(m.group()) >= minimum
    ]


@needs_native
@settings(max_examples=2000, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from("0123456789 \t()./+-a\u0663\uff15\u4e2d\U0001d7ce\n"), max_size=200
    ),
    st.integers(min_value=-1, max_value=24),
)
def test_the_native_phone_runs_are_the_expressions(text: str, minimum: int) -> None:
    # the runs a phone number's match can lie in, holding two \d digits (Arabic-Indic,
    # fullwidth and mathematical digits too), in 1-, 2- and 4-byte strings
    assert native is not None
    expected = [
        m.span()
        for m in shapes_module.PHONE_RUN.finditer(text)
        if len(m.group()) >= minimum and len(shapes_module.DIGIT.findall(m.group())) >= 2
    ]
    assert native.phone_runs(text, minimum) == expected
    assert shapes_module.phone_runs_python(text, minimum) == expected
