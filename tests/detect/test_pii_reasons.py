"""A PII refusal names the JSON path and entity type that fired, never the text.

At a shared sink (the check's violation, its report JSON and the audit log) and in
operator vetting (``ContentRefused``), on the real PII gate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kg_testing import make_guard, sealed_record

from kairo_guard import ContentError, ContentRefused, Guard
from kairo_guard.detect.fields import Field, json_path, record_fields
from kairo_guard.detect.fingerprint import record_strings, record_text

EMAIL = "maria.garcia@example.org"
PHONE = "+1 415 555 0134"

# record -> (entity type, the path the reason must name); the planted values are the
# email address and the phone number, which must never appear in a reason.
CASES: list[tuple[object, list[str]]] = [
    # the small English model reads the field name "lang" as a person: withheld like a name
    ({"features": {"lang": "en"}}, ["PERSON at $.features.* (a key)"]),
    ({"features": {"tone": f"contact {EMAIL}"}}, ["EMAIL_ADDRESS at $.features.tone"]),
    (
        {"items": [{"text": "ok"}, {"text": "fine"}, {"text": "good"}, {"text": f"call {PHONE}"}]},
        ["PHONE_NUMBER at $.items[3].text"],
    ),
    ({"meta": {EMAIL: "owner"}}, ["EMAIL_ADDRESS at $.meta.* (a key)"]),
    (
        {EMAIL: {"note": f"call {PHONE}"}},
        ["EMAIL_ADDRESS at $.* (a key)", "PHONE_NUMBER at $.*.note"],
    ),
    ({"free text key": f"mail {EMAIL}"}, ["EMAIL_ADDRESS at $.*"]),
    ({"Garcia": {"note": "hi"}}, ["PERSON at $.* (a key)"]),  # a name, not a field name
    ({"rows": [[f"mail {EMAIL}"]]}, ["EMAIL_ADDRESS at $.rows[0][0]"]),
]
IDS = [
    "misread-field-name",
    "nested-field",
    "list-item",
    "key",
    "value-under-a-pii-key",
    "free-text-key",
    "name-key",
    "nested-list",
]


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guard]:
    home = tmp_path_factory.mktemp("reasons")
    # operator data vetted for every address and number too (the default leaves them
    # to the customer identifier index), so that vetting's reasons can be read here
    kinds = '["API_KEY", "CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "PHONE_NUMBER"]'
    (home / "kairo-guard.toml").write_text(f"[pii]\noperator_entities = {kinds}\n")
    with make_guard(home, pii_gate=True) as g:
        yield g


def _audit_text(guard: Guard) -> str:
    guard.audit.flush()
    home = Path(guard.settings.home)
    return "".join(p.read_text(errors="replace") for p in home.rglob("*") if p.is_file()
                   and "audit" in p.parts)  # fmt: skip


def _assert_never_leaks(*texts: str) -> None:
    for text in texts:
        assert EMAIL not in text
        assert PHONE not in text
        assert "maria" not in text.lower()
        assert "garcia" not in text.lower()


@pytest.mark.parametrize(("record", "expected"), CASES, ids=IDS)
def test_when_a_sink_refuses_pii_then_the_reason_names_each_path_and_no_text(
    guard: Guard, record: dict[str, Any], expected: list[str]
) -> None:
    sink = guard.resolve_sink("router", kind="shared-training")
    # anonymized telemetry: the strict policy, which looks for names too
    sealed = sealed_record(guard, record, data_class="anonymized_telemetry")
    report = guard.check([sealed], sink=sink)
    assert [v.rule for v in report.violations] == ["pii.detected"]
    reason = report.violations[0].reason
    assert reason == "text holds PII: " + "; ".join(expected)
    audit = _audit_text(guard)
    assert "pii.detected" in audit  # the decision was recorded: the log is read
    _assert_never_leaks(reason, json.dumps(report.to_dict()), audit)


NAMES_ONLY = {"misread-field-name", "name-key"}
"""Cases whose only finding is a name: operator data is not vetted for names."""


def test_when_operator_data_holds_only_names_or_field_names_then_vetting_passes_it(
    guard: Guard,
) -> None:
    for (content, _), case in zip(CASES, IDS, strict=True):
        if case in NAMES_ONLY:
            assert guard.seal_operator_data(content, source="vendor").startswith("kp1.")


@pytest.mark.parametrize(
    ("content", "expected"),
    [*(c for c, i in zip(CASES, IDS, strict=True) if i not in NAMES_ONLY),
     (f"escalated by {EMAIL}", ["EMAIL_ADDRESS at $"])],
    ids=[*(i for i in IDS if i not in NAMES_ONLY), "bare-string"],
)  # fmt: skip
def test_when_vetting_refuses_pii_then_content_refused_names_each_path_and_no_text(
    guard: Guard, content: object, expected: list[str]
) -> None:
    with pytest.raises(ContentRefused) as info:
        guard.seal_operator_data(content, source="vendor")
    assert info.value.rule == "pii.detected"
    assert info.value.reason == "text holds PII: " + "; ".join(expected)
    _assert_never_leaks(info.value.reason, str(info.value), _audit_text(guard))


def test_when_many_fields_hold_pii_then_the_reason_names_five_and_counts_the_rest(
    guard: Guard,
) -> None:
    record = {"items": [f"mail {EMAIL}"] * 7}
    with pytest.raises(ContentRefused) as info:
        guard.seal_operator_data(record, source="vendor")
    paths = "; ".join(f"EMAIL_ADDRESS at $.items[{i}]" for i in range(5))
    assert info.value.reason == f"text holds PII: {paths}; and 2 more fields"


# -- paths, without the gate ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "withheld", "expected"),
    [
        ((), (), "$"),
        (("features", "lang"), (), "$.features.lang"),
        (("items", 3, "text"), (), "$.items[3].text"),
        (("a b", "c"), (), "$.*.c"),  # not a plain identifier: free text stays out
        (("x" * 65,), (), "$.*"),  # too long to be a field name
        (("owner", "name"), ("owner",), "$.*.name"),  # a key that holds PII
        (("9lives",), (), "$.*"),
        (("_id", "user-agent"), (), "$._id.user-agent"),
    ],
)
def test_json_path_shows_only_plain_keys(
    path: tuple[str | int, ...], withheld: tuple[str, ...], expected: str
) -> None:
    assert json_path(path, withheld) == expected


def test_record_fields_walk_keys_before_values_in_sorted_order_without_the_seal() -> None:
    record = {"b": ["raw", 7, {"c": "deep", "_kairo": "x"}], "a": "first", "_kairo": "kg1.seal"}
    assert list(record_fields(record)) == [
        Field(("a",), "a", True),
        Field(("a",), "first", False),
        Field(("b",), "b", True),
        Field(("b", 0), "raw", False),
        Field(("b", 2, "_kairo"), "_kairo", True),  # only the record's own seal is skipped
        Field(("b", 2, "_kairo"), "x", False),
        Field(("b", 2, "c"), "c", True),
        Field(("b", 2, "c"), "deep", False),
    ]
    # the fingerprint text is the same strings, in the same order
    assert record_strings(record) == ["a", "first", "b", "raw", "_kairo", "x", "c", "deep"]
    assert record_text(record) == "a first b raw _kairo x c deep"
    for unreadable in ({3: "n"}, {"b": [b"raw"]}):  # not digested either: refused
        with pytest.raises(ContentError):
            record_fields(unreadable)
    assert list(record_fields("bare")) == [Field((), "bare", False)]
