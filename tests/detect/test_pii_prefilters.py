"""The gate's shortcuts find what presidio's recognizers find, at a fraction of the cost.

Each shortcut is checked against the real presidio recognizer it stands in front of,
on hand-picked edge cases and on generated telemetry.
"""

from __future__ import annotations

import itertools
import random
import re
import sys
from pathlib import Path

import presidio_analyzer  # noqa: F401 - the pii extra: missing, these tests fail, never skip
import pytest
from presidio_analyzer import RecognizerResult
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
)

from kairo_guard.detect.pii.prefilters import (
    MIN_PHONE_DIGITS,
    phone_window_chars,
    phone_windows,
    possible_entities,
)
from kairo_guard.detect.pii.recognizers import (
    PathUrlRecognizer,
    SecretRecognizer,
    WindowedPhoneRecognizer,
)

# benchmarks/ holds the PII corpus generator (not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from pii_corpus import corpus

pytestmark = pytest.mark.storeless  # opens no state store: runs once, in the main pass

PHONE_CASES = [
    "SMS to +1 415-555-0132 bounced",
    "call (212) 555-0118 ext. 12 now",
    "call 212-555-0118 x 7 now",
    "+44 20 7946 0958;ext=123",
    "tel:+49 (0)30 901820 and 030 9018 2000",
    "dial 011 44 20 7946 0958 from the US",
    "\uff0b44 20 7946 0958 (fullwidth plus)",
    "abc4155550132 and 4155550132def are glued to words",
    "2026-11-12T17:45:18.123Z order 36401454 done",
    "2026-11-12 17:45 timestamp, 12/11/2026 date",
    "numbers 4155550132 8002341234 side by side",
    "651-234-2345/332-445-1234 two with a slash",
    "ids 7415 and 98765 are short",
    "+91 98765 43210, +55 11 91234-5678, +33 1 42 68 53 00",
    "peer=148.35.111.117 card 4111 1111 1111 1111",
    "IBAN DE89 3704 0044 0532 0130 00",
    "5% of 4155550132 and $4155550132",
    "( 415 ) 555 - 0132",
]


def _phone_spans(results: list[RecognizerResult]) -> set[tuple[int, int]]:
    return {(r.start, r.end) for r in results}


def _stock_phone_spans(text: str) -> set[tuple[int, int]]:
    """Stock presidio's phone numbers with at least MIN_PHONE_DIGITS digits."""
    found = _phone_spans(PhoneRecognizer().analyze(text, ["PHONE_NUMBER"]))
    return {(a, b) for a, b in found if len(re.findall(r"\d", text[a:b])) >= MIN_PHONE_DIGITS}


@pytest.mark.parametrize("text", PHONE_CASES)
def test_windowed_phone_recognizer_finds_what_stock_finds(text: str) -> None:
    ours = _phone_spans(WindowedPhoneRecognizer().analyze(text, ["PHONE_NUMBER"]))
    assert ours == _stock_phone_spans(text)


def test_windowed_phone_recognizer_agrees_with_stock_on_generated_telemetry() -> None:
    texts = [s.text for s in corpus(150, seed=3)]
    ours = WindowedPhoneRecognizer()
    for text in texts:
        assert _phone_spans(ours.analyze(text, ["PHONE_NUMBER"])) == _stock_phone_spans(text)


@pytest.mark.parametrize(
    ("text", "windows"),
    [
        ("no digits at all", []),
        ("retry 3 of 5 after 250 ms", []),
        ("order 36401454 x", ["r 36401454 x"]),
        ("r 7415 ms; 2026-11-12T17:45", ["; 2026-11-12T17:"]),
        ("at 17:45:18.123 ok", []),
        ("call +1 (415) 555-0132 ext. 12 now", ["l +1 (415) 555-0132 ext. 12 now"]),
    ],
)
def test_phone_windows_cover_candidates_with_their_context(text: str, windows: list[str]) -> None:
    assert [text[a:b] for a, b in phone_windows(text)] == windows


def test_phone_windows_do_not_overlap_and_are_counted() -> None:
    text = "a 4155550132 b 4155550133 c " * 5
    bounds = phone_windows(text)
    assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(bounds))
    assert phone_window_chars(text) == sum(b - a for a, b in bounds)


RECOGNIZERS = {
    "EMAIL_ADDRESS": EmailRecognizer,
    "URL": PathUrlRecognizer,
    "IP_ADDRESS": IpRecognizer,
    "IBAN_CODE": IbanRecognizer,
    "CREDIT_CARD": CreditCardRecognizer,
    "API_KEY": SecretRecognizer,
}
PREFILTER_CASES = [
    "mail bob@example.org",
    "GET https://acme.example.com/users/1 and www.example.org/x",
    "GET https://api.example.com failed, http://files.example.org:8080/u/7 too",
    "peer 10.0.0.1, v6 2001:db8::1, mapped ::ffff:10.0.0.1, fe80::1%eth0, ::",
    "a:b:c:d:e:f:a:b and abcd::ef",
    "IBAN DE89370400440532013000 or gb82 west 1234 5698 7654 32",
    "card 4111111111111111, 3782-822463-10005",
    "key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t and AKIAIOSFODNN7EXAMPLE",
    "token Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdI",
]


def _random_text(rnd: random.Random) -> str:
    alphabet = "abcdefABCDEF0123456789 .:/@-_+=xX"
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(5, 80)))


def test_prefilters_never_skip_a_recognizer_that_would_find_something() -> None:
    rnd = random.Random(5)
    texts = PREFILTER_CASES + [s.text for s in corpus(150, seed=4)]
    texts += [_random_text(rnd) for _ in range(1500)]
    found_somewhere = set()
    for text in texts:
        possible = set(possible_entities(text, RECOGNIZERS))
        for entity, make in RECOGNIZERS.items():
            results = make().analyze(text, [entity], None)
            if results:
                found_somewhere.add(entity)
                assert entity in possible, (entity, text)
    assert found_somewhere == set(RECOGNIZERS)  # every prefilter was put to the test


def test_prefilters_skip_plain_telemetry() -> None:
    text = "upstream TIMEOUT after 30 s on /v1/chat, retry 2 of 5 (status=503)"
    assert possible_entities(text, RECOGNIZERS) == []
