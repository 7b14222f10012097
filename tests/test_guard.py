"""The Guard facade: check(), the sink decorator in every mode and shape, fail-closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kg_testing import mint_unchecked, sealed_record

from kairo_guard import (
    CheckReport,
    ConfigError,
    Guard,
    IsolationViolation,
    Outcome,
    Sealed,
    StoreError,
)

SHARED = ["shared-training", "shared-fine-tune", "shared-eval"]


def _mixed(guard: Guard) -> list[dict[str, object]]:
    return [
        sealed_record(guard, {"text": "public 1"}, data_class="operator_public"),
        guard.label_record({"text": "acme secret"}, tenant="acme"),
        sealed_record(guard, {"p50": 12.5}, data_class="anonymized_telemetry"),
        {"text": "no seal at all"},
    ]


def test_check_returns_report_with_counts_rules_and_positions(guard: Guard) -> None:
    report = guard.check(_mixed(guard), sink=guard.resolve_sink("router", kind="shared-training"))
    assert (report.total, report.allowed, report.blocked) == (4, 2, 2)
    assert report.by_rule == {
        "allow.operator-public": 1,
        "class.customer-content-shared": 1,
        "allow.anonymized-telemetry-shared": 1,
        "seal.missing": 1,
    }
    assert [(v.index, v.rule) for v in report.violations] == [
        (1, "class.customer-content-shared"),
        (3, "seal.missing"),
    ]
    assert report.violations[0].tenant == guard.keys.pseudonym("acme")
    assert not report.ok


def test_when_sink_unknown_and_no_kind_then_config_error(guard: Guard) -> None:
    with pytest.raises(ConfigError, match="unknown sink"):
        guard.check([], sink="nowhere")


@pytest.mark.parametrize("kind", ["shared-everything", "tenant-fine-tune", "tenant-fine-tune:"])
def test_when_sink_kind_invalid_then_config_error(guard: Guard, kind: str) -> None:
    with pytest.raises(ConfigError):
        guard.sink("x", kind=kind)


# -- modes --------------------------------------------------------------------------


def test_enforce_raises_before_the_function_runs_and_carries_the_report(guard: Guard) -> None:
    calls: list[int] = []

    @guard.sink("router", kind="shared-training", mode="enforce")
    def train(records: list[dict[str, object]]) -> None:
        calls.append(len(records))

    with pytest.raises(IsolationViolation) as info:
        train(_mixed(guard))
    assert calls == []
    assert info.value.report.blocked == 2
    assert "refused 2 of 4" in str(info.value)


def test_filter_passes_only_allowed_records_in_the_same_container(guard: Guard) -> None:
    seen: list[object] = []
    reports: list[CheckReport] = []

    @guard.sink("router", kind="shared-training", mode="filter", on_report=reports.append)
    def train(records: tuple[dict[str, object], ...]) -> None:
        seen.append(records)

    records = tuple(_mixed(guard))
    train(records)
    assert seen == [(records[0], records[2])]
    assert reports[0].blocked == 2


def test_observe_passes_everything_and_reports(guard: Guard) -> None:
    seen: list[object] = []
    reports: list[CheckReport] = []

    @guard.sink("router", kind="shared-training", mode="observe", on_report=reports.append)
    def train(records: list[dict[str, object]]) -> None:
        seen.append(records)

    records = _mixed(guard)
    train(records)
    assert seen == [records]
    assert reports[0].blocked == 2
    assert reports[0].mode.value == "observe"


@pytest.mark.parametrize(
    "value",
    ["plain text", b"raw bytes", {"text": "dict"}, Sealed("text", "kg1.k1.bad.tag")],
    ids=["str", "bytes", "dict", "sealed-forged"],
)
@pytest.mark.parametrize("mode", ["enforce", "filter"])
def test_single_unlabeled_records_raise_in_enforce_and_filter(
    guard: Guard, value: object, mode: str
) -> None:
    @guard.sink("router", kind="shared-eval", mode=mode)
    def evaluate(record: object) -> object:
        return record

    with pytest.raises(IsolationViolation):
        evaluate(value)


def test_sealed_text_with_valid_operator_seal_passes(guard: Guard) -> None:
    text = "The quick brown fox (public domain)"
    seal = mint_unchecked(guard, text, data_class="operator_public")

    @guard.sink("router", kind="shared-training")
    def train(record: Sealed) -> str:
        return str(record.content)

    assert train(Sealed(text, seal)) == text
    with pytest.raises(IsolationViolation):
        train(Sealed(text + "!", seal))


def test_bytes_content_digest_is_over_the_raw_bytes(guard: Guard) -> None:
    sink = guard.resolve_sink("s", kind="shared-eval")
    text = b"plain UTF-8 text, read in full"
    seal = mint_unchecked(guard, text, data_class="operator_public")
    assert guard.check(Sealed(text, seal), sink=sink).ok
    assert not guard.check(Sealed(text + b" more", seal), sink=sink).ok  # digest mismatch
    binary = b"\x00\xffbinary"  # digested, but the reader cannot read it: never passes
    report = guard.check(
        Sealed(binary, mint_unchecked(guard, binary, data_class="operator_public")), sink=sink
    )
    assert [v.rule for v in report.violations] == ["content.unencodable"]


# -- shapes: generators, async -------------------------------------------------------


def test_generator_argument_is_checked_lazily_as_consumed(guard: Guard) -> None:
    produced: list[int] = []
    records = _mixed(guard)

    def stream() -> Iterator[dict[str, object]]:
        for i, r in enumerate(records):
            produced.append(i)
            yield r

    @guard.sink("router", kind="shared-training", mode="enforce")
    def train(items: Iterator[dict[str, object]]) -> list[object]:
        taken: list[object] = []
        for item in items:
            taken.append(item)
        return taken

    with pytest.raises(IsolationViolation) as info:
        train(stream())
    # record 0 passed, record 1 refused: nothing after it was read
    assert produced == [0, 1]
    assert info.value.report.total == 2


def test_generator_in_filter_mode_yields_allowed_and_reports_at_end(guard: Guard) -> None:
    reports: list[CheckReport] = []

    @guard.sink("router", kind="shared-training", mode="filter", on_report=reports.append)
    def train(items: Iterator[dict[str, object]]) -> int:
        return sum(1 for _ in items)

    assert train(iter(_mixed(guard))) == 2
    assert reports[0].total == 4


def test_async_function_with_list_and_async_iterable(guard: Guard) -> None:
    records = _mixed(guard)

    @guard.sink("router", kind="shared-training", mode="filter")
    async def train(items: list[dict[str, object]]) -> int:
        await asyncio.sleep(0)
        return len(items)

    async def agen() -> AsyncIterator[dict[str, object]]:
        for r in records:
            yield r

    @guard.sink("router2", kind="shared-training", mode="enforce")
    async def train_stream(items: AsyncIterator[dict[str, object]]) -> int:
        return len([i async for i in items])

    assert asyncio.run(train(records)) == 2
    with pytest.raises(IsolationViolation):
        asyncio.run(train_stream(agen()))


def test_decorator_guards_named_data_parameters_and_leaves_others(guard: Guard) -> None:
    @guard.sink("router", kind="shared-training", data=["train", "valid"], mode="filter")
    def fit(train: list[Any], valid: list[Any], epochs: int = 3) -> tuple[int, int, int]:
        return len(train), len(valid), epochs

    records = _mixed(guard)
    assert fit(records, valid=records[:2], epochs=5) == (2, 1, 5)


def test_decorator_with_unknown_parameter_fails_at_decoration(guard: Guard) -> None:
    with pytest.raises(ConfigError, match="no parameter"):

        @guard.sink("router", kind="shared-training", data="nope")
        def fit(records: list[object]) -> None: ...


# -- fail closed -----------------------------------------------------------------------


class _BrokenStore:
    def list_agreements(self, tenant: str | None = None) -> list[object]:
        raise StoreError("database is gone")

    def list_retention(self) -> dict[str, dict[str, int]]:
        return {}  # sealing reads the tenants' retention periods

    def erased_tenants(self) -> dict[str, float]:
        raise StoreError("database is gone")

    def add_fingerprints(self, tenant: str, fingerprints: object) -> None:
        raise StoreError("database is gone")  # so sealing customer content fails too

    def claim_fingerprint_scheme(self, scheme: str) -> str:
        return scheme  # read once at start, while the database was still there

    def get_audit_anchor(self, log_id: str) -> None:
        return None  # read once at start too

    def advance_audit_anchor(self, log_id: str, anchor: object) -> None: ...

    def close(self) -> None: ...


def test_when_store_fails_then_fine_tune_blocks(tmp_path: Path) -> None:
    from kg_testing import make_guard

    g = make_guard(tmp_path, store=_BrokenStore())
    try:
        with pytest.raises(StoreError):  # no seal without index
            g.label_record({"t": "x"}, tenant="acme")
        record = sealed_record(g, {"t": "x"}, data_class="customer_content", tenant="acme")
        report = g.check([record], sink=g.resolve_sink("ft", kind="tenant-fine-tune:acme"))
        assert report.violations[0].rule == "agreement.inactive"
    finally:
        g.close()


def test_when_policy_raises_then_record_blocked_with_guard_error(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(facts: object) -> None:
        raise RuntimeError("bug in a rule")

    monkeypatch.setattr(guard.policy, "decide", explode)
    record = sealed_record(guard, {"t": "x"}, data_class="operator_public")
    report = guard.check([record], sink=guard.resolve_sink("s", kind="shared-training"))
    assert report.violations[0].rule == "guard.error"
    assert "bug in a rule" in report.violations[0].reason


@pytest.mark.parametrize(
    "content",
    [{1: "non-string key"}, {"big": 2**70}, {"obj": object()}],
    ids=["int-key", "bigint", "object"],
)
def test_when_content_cannot_be_digested_then_blocked(guard: Guard, content: object) -> None:
    report = guard.check([content], sink=guard.resolve_sink("s", kind="shared-training"))
    assert report.violations[0].rule == "content.unencodable"


# -- audit --------------------------------------------------------------------------


def test_every_decision_is_in_the_audit_log_with_digests_never_content(guard: Guard) -> None:
    records = _mixed(guard)
    report = guard.check(records, sink=guard.resolve_sink("router", kind="shared-training"))
    guard.audit.flush()
    log = (guard.settings.home / "audit" / "audit.jsonl").read_bytes()
    assert b"acme secret" not in log
    assert b'"acme"' not in log
    entries = [orjson.loads(line) for line in log.splitlines()]
    rows = [r for e in entries if e.get("check") == report.check_id for r in e.get("rows", [])]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (0, "allow", "allow.operator-public"),
        (1, "block", "class.customer-content-shared"),
        (2, "allow", "allow.anonymized-telemetry-shared"),
        (3, "block", "seal.missing"),
    ]
    summary = next(e for e in entries if e.get("event") == "check")
    assert summary["blocked"] == 2


# -- property: nothing but verified permitting data reaches a shared sink --------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.dictionaries(st.text(max_size=8), _json, max_size=4),
    other=st.dictionaries(st.text(max_size=8), _json, max_size=4),
    seal_kind=st.sampled_from(["none", "garbage", "cc", "usage", "anon", "operator", "moved-anon"]),
    sink=st.sampled_from(SHARED),
    context=st.sampled_from([None, "acme"]),
)
def test_only_verified_permitting_records_reach_shared_sinks(
    guard: Guard,
    content: dict[str, object],
    other: dict[str, object],
    seal_kind: str,
    sink: str,
    context: str | None,
) -> None:
    content = {k: v for k, v in content.items() if k != "_kairo"}
    other = {k: v for k, v in other.items() if k != "_kairo"}
    seals = {
        "none": None,
        "garbage": "kg1.k1.e30.AAAA",
        "cc": lambda: guard.seal(content, tenant="acme"),
        "usage": lambda: guard.seal(content, tenant="acme", data_class="usage_telemetry"),
        "anon": lambda: mint_unchecked(guard, content, data_class="anonymized_telemetry"),
        "operator": lambda: mint_unchecked(guard, content, data_class="operator_public"),
        "moved-anon": lambda: mint_unchecked(guard, other, data_class="anonymized_telemetry"),
    }
    make = seals[seal_kind]
    seal = make() if callable(make) else make
    record = content if seal is None else {**content, "_kairo": seal}
    run = guard.checks.start(guard.resolve_sink("s", kind=sink))
    if context:
        with guard.tenant_context(context):
            run = guard.checks.start(guard.resolve_sink("s", kind=sink))
    decision = run.decide(record)
    run.finish()
    verified_permitting = seal_kind in {"anon", "operator"} or (
        seal_kind == "moved-anon" and other == content
    )
    assert (decision.outcome is Outcome.ALLOW) == verified_permitting


def test_unlabeled_record_at_shared_sink_is_attributed_by_its_fingerprints(guard: Guard) -> None:
    text = (
        "Acme merger memo: the board approves the purchase of Initech's battery unit for "
        "forty million, closing in March, with the Lisbon team moving to the Porto campus."
    )
    guard.index_content("acme", {"text": text})
    sink = guard.resolve_sink("s", kind="shared-training")
    report = guard.check([{"note": text.lower()}, {"note": "nothing to see here"}], sink=sink)
    assert [(v.rule, v.tenant) for v in report.violations] == [
        ("fingerprint.tenant-content", guard.keys.pseudonym("acme")),
        ("seal.missing", None),
    ]


@pytest.mark.parametrize(
    ("source", "tenant", "expected"),
    [
        ("upload:acme", "acme", "upload:P"),
        ("upload:b/data", "b", "upload:P/data"),
        ("acme-corp:acme", "acme", "P-corp:P"),  # a tenant id never survives a dash
        ("ft-acme", "acme", "ft-P"),  # sink names and sources: one rule
        ("upload:acmeco", "acme", "upload:Pco"),  # inside a word too: the id never leaves
        ("acmeft", "acme", "Pft"),
        ("upload:acme.eu", "acme.eu", "upload:P"),
        ("api", "acme", "api"),
    ],
)
def test_when_a_name_embeds_a_tenant_id_then_every_occurrence_is_pseudonymized(
    source: str, tenant: str, expected: str
) -> None:
    from kairo_guard.core.keys import pseudonymize_name

    assert pseudonymize_name(source, tenant, "P") == expected
