"""The PII policy per data class: operator data is vetted for structured identifiers
(never for length, never for a key that holds none), anonymized telemetry stays strict,
and a shared sink holds each class to the policy it was vetted under."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from kg_testing import make_guard, mint_unchecked

from kairo_guard import Guard
from kairo_guard.core.exceptions import ContentRefused
from kairo_guard.core.keys import KeyRing
from kairo_guard.core.types import DataClass

PUBLIC = [
    {"lang": "en"},
    {"text": "Guido van Rossum created Python at CWI in Amsterdam."},
    {"title": "Ada Lovelace", "text": "Notes on the Analytical Engine, translated from Menabrea."},
    {"text": "See https://docs.python.org/3/library/json.html for the json module."},
]
PUBLIC_CONTACTS = [  # no customer sent them: left to the customer identifier index
    {"text": "write to jane.roe@example.org for access"},
    {"text": "call our desk at +1 415 555 0132 today"},
    {"jane.roe@example.org": True},
]
IDENTIFIERS = [
    ("CREDIT_CARD", {"note": "card 4111 1111 1111 1111 on file"}),
    ("IBAN_CODE", {"text": "pay to GB82 WEST 1234 5698 7654 32 please"}),
    ("US_SSN", {"text": "her number is 536-22-8421 on the form"}),
    ("API_KEY", {"text": "token ghp_Zk8Qw3Rt6Yu9Io1Pa4Sd7Fg0Hj2Kl5Zx8Cv"}),
    ("CREDIT_CARD", {"4111 1111 1111 1111": True}),  # in a key
]


@pytest.fixture
def guard(tmp_path: Path, ring: KeyRing) -> Any:
    with make_guard(tmp_path / "state", ring=ring, pii_gate=True) as g:
        yield g


def vet(guard: Guard, content: dict[str, Any], source: str) -> dict[str, Any]:
    """``content`` sealed as operator data (vetted), as ``label`` writes it."""
    return {**content, "_kairo": guard.seal_operator_data(content, source=source)}


def _long_public_text(chars: int) -> str:
    rng = random.Random(11)
    sentence = "the module reads each record and writes a canonical line; names such as "
    words = (sentence + "Alice Smith, Bob Jones and Paris appear in examples and licences").split()
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < chars:
        out.append(rng.choice(words))
    return " ".join(out)


@pytest.mark.parametrize("record", [*PUBLIC, *PUBLIC_CONTACTS], ids=lambda r: str(r)[:24])
def test_public_text_with_names_and_urls_is_vetted_and_passes_a_shared_sink(
    guard: Guard, record: dict[str, Any]
) -> None:
    sealed = vet(guard, record, "docs")
    report = guard.check([sealed], sink=guard.resolve_sink("pretrain", kind="shared-training"))
    assert report.ok, report.violations


def test_a_long_public_document_is_read_whole_not_refused_for_length(guard: Guard) -> None:
    text = _long_public_text(40_000)
    sealed = vet(guard, {"text": text}, "d")
    assert guard.check([sealed], sink=guard.resolve_sink("p", kind="shared-training")).ok
    hidden = text[:30_000] + " card 4111 1111 1111 1111 " + text[30_000:]
    with pytest.raises(ContentRefused) as refused:  # an identifier deep inside is found
        vet(guard, {"text": hidden}, "d")
    assert refused.value.rule == "pii.detected"
    assert "CREDIT_CARD at $.text" in str(refused.value)
    assert "4111" not in str(refused.value)


@pytest.mark.parametrize(("entity", "record"), IDENTIFIERS, ids=[e for e, _ in IDENTIFIERS])
def test_structured_identifiers_are_refused_in_operator_data(
    guard: Guard, entity: str, record: dict[str, Any]
) -> None:
    with pytest.raises(ContentRefused) as refused:
        vet(guard, record, "docs")
    assert refused.value.rule == "pii.detected"
    assert entity in str(refused.value)


def test_telemetry_stays_strict_at_a_shared_sink(guard: Guard) -> None:
    """The same name that operator data may carry blocks anonymized telemetry."""
    content = {"route": "/v1/chat", "note": "Guido van Rossum"}
    seal = mint_unchecked(
        guard, content, data_class=DataClass.ANONYMIZED_TELEMETRY, source="telemetry-aggregator"
    )
    report = guard.check(
        [{**content, "_kairo": seal}], sink=guard.resolve_sink("router", kind="shared-training")
    )
    assert [v.rule for v in report.violations] == ["pii.detected"]
    assert "PERSON" in report.violations[0].reason


def test_names_are_looked_for_in_operator_data_when_configured(
    tmp_path: Path, ring: KeyRing
) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "kairo-guard.toml").write_text(
        '[pii]\noperator_entities = ["EMAIL_ADDRESS", "PERSON"]\n'
    )
    with (
        make_guard(tmp_path / "state", ring=ring, pii_gate=True) as guard,
        pytest.raises(ContentRefused, match="PERSON"),
    ):
        vet(guard, {"text": "Guido van Rossum created Python."}, "docs")


def test_a_text_the_strict_gate_cannot_read_is_not_called_pii(guard: Guard) -> None:
    content = {"note": "status ok " * 800}  # over the strict gate's 5,000 characters
    seal = mint_unchecked(
        guard, content, data_class=DataClass.ANONYMIZED_TELEMETRY, source="telemetry-aggregator"
    )
    report = guard.check(
        [{**content, "_kairo": seal}], sink=guard.resolve_sink("router", kind="shared-training")
    )
    (violation,) = report.violations
    assert violation.rule == "pii.unanalysed"
    assert "could not read" in violation.reason
    assert "GUARD_TOO_LONG" in violation.reason


KINDS = ("API_KEY", "CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "PHONE_NUMBER")
"""The windowed gate's entities here: addresses and numbers too (windows are the point)."""


@pytest.fixture(scope="module")
def windowed() -> Any:
    from kairo_guard.detect.pii.gate import PiiGate

    return PiiGate(entities=KINDS, window_chars=1_000)


@pytest.mark.parametrize("at", range(850, 1_010, 20))
def test_an_identifier_across_a_window_boundary_is_found_whole(windowed: Any, at: int) -> None:
    """Windows of 1,000 characters overlap by 120: an address cut by one boundary is whole
    in the next window, wherever the cut falls."""
    text = "a" * (at - 1) + " jane.roe@example.org " + "b " * 1_500
    assert windowed.check(text) == ["EMAIL_ADDRESS"]


def test_a_window_dense_with_digit_groups_is_read_closer_not_refused(windowed: Any) -> None:
    from kairo_guard.detect.pii.gate import PiiGate

    builds = " ".join(f"build 2024.{i:04d}.{i * 7 % 1000:03d}" for i in range(300))
    strict = PiiGate(entities=KINDS)  # one text, one analysis: over its bounds
    assert strict.check(builds[:1_000]) == ["GUARD_TOO_LONG"]
    assert windowed.check(builds) == []  # read in smaller windows instead
    hidden = builds[:4_000] + " call +1 415 555 0132 now " + builds[4_000:]
    assert windowed.check(hidden) == ["PHONE_NUMBER"]


@pytest.mark.parametrize(
    "path",
    ["/usr/share/common-licenses/GFDL-1", "cpan/CPAN-Meta/lib/CPAN/Meta/History/Meta_1_0",
     "com/nodejs/node/blob/1a83ad6a693f851199608ae957ac5d4f76871485/Makefile",
     "org/en-US/docs/Web/JavaScript/Reference/Global_Objects/Uint8Array"],
)  # fmt: skip
def test_a_path_of_words_is_not_taken_for_a_secret(windowed: Any, path: str) -> None:
    assert windowed.check(f"see {path} for the full text") == []


@pytest.mark.parametrize(
    "secret",
    ["q8Zr/Tx3Lw/9vKp2Mn7Yb4Hc1Jd6Fg0Ws5Ra8Eu3", "AbCdEf12/GhIjKl34/MnOpQr56/StUvWx78+Yz90"],
)
def test_a_secret_with_slashes_is_still_a_secret(windowed: Any, secret: str) -> None:
    assert windowed.check(f"token {secret} in the config") == ["API_KEY"]
