"""The default policy table, rule loading, and order independence."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kg_testing import sealed_record

from kairo_guard import DataClass, Guard, Outcome, Policy, PolicyError, rule
from kairo_guard.core.policy import BUILTIN_RULES, DEFAULT_ALLOW_RULES, Facts, Relation
from kairo_guard.core.types import SinkKind

SHARED = ["shared-training", "shared-fine-tune", "shared-eval"]
DOC = {"text": "Quarterly numbers for the Lisbon plant", "n": 7}


def _decide(guard: Guard, record: object, sink_kind: str) -> tuple[Outcome, str]:
    sink = guard.resolve_sink("s", kind=sink_kind)
    run = guard.checks.start(sink)
    decision = run.decide(record)
    run.finish()
    return decision.outcome, decision.rule


def _records(guard: Guard) -> dict[str, object]:
    now = int(guard.clock())
    return {
        "cc-acme": guard.label_record(DOC, tenant="acme"),
        "cc-globex": guard.label_record(DOC, tenant="globex"),
        "usage-acme": guard.label_record(DOC, tenant="acme", data_class="usage_telemetry"),
        "anon": sealed_record(guard, DOC, data_class="anonymized_telemetry"),
        "operator": sealed_record(guard, DOC, data_class="operator_public"),
        "unlabeled": dict(DOC),
        "bad-seal": {**DOC, "_kairo": "kg1.k1.AAAA.BBBB"},
        "expired-operator": sealed_record(
            guard, DOC, data_class="operator_public", created_at=now - 100, expires_at=now - 1
        ),
        "expired-cc-acme": sealed_record(
            guard, DOC, data_class="customer_content", tenant="acme",
            created_at=now - 100, expires_at=now - 1,
        ),
    }  # fmt: skip


# The DESIGN.md table: (record, sink) -> (outcome, rule). acme holds an active agreement.
TABLE = [
    *[("cc-acme", k, Outcome.BLOCK, "class.customer-content-shared") for k in SHARED],
    ("cc-acme", "tenant-fine-tune:acme", Outcome.ALLOW, "allow.tenant-own-content"),
    *[("cc-globex", k, Outcome.BLOCK, "class.customer-content-shared") for k in SHARED],
    ("cc-globex", "tenant-fine-tune:acme", Outcome.BLOCK, "tenant.cross-tenant"),
    *[("usage-acme", k, Outcome.BLOCK, "class.usage-telemetry") for k in SHARED],
    ("usage-acme", "tenant-fine-tune:acme", Outcome.BLOCK, "class.usage-telemetry"),
    *[("anon", k, Outcome.ALLOW, "allow.anonymized-telemetry-shared") for k in SHARED],
    ("anon", "tenant-fine-tune:acme", Outcome.BLOCK, "class.anonymized-telemetry-tenant-sink"),
    *[("operator", k, Outcome.ALLOW, "allow.operator-public") for k in SHARED],
    ("operator", "tenant-fine-tune:acme", Outcome.ALLOW, "allow.operator-public"),
    *[("unlabeled", k, Outcome.BLOCK, "seal.missing") for k in [*SHARED, "tenant-fine-tune:acme"]],
    *[("bad-seal", k, Outcome.BLOCK, "seal.invalid") for k in [*SHARED, "tenant-fine-tune:acme"]],
    *[
        ("expired-operator", k, Outcome.BLOCK, "retention.expired")
        for k in [*SHARED, "tenant-fine-tune:acme"]
    ],
    ("expired-cc-acme", "tenant-fine-tune:acme", Outcome.BLOCK, "retention.expired"),
]


@pytest.mark.parametrize(("name", "sink", "outcome", "rule_id"), TABLE)
def test_default_policy_table(
    guard: Guard, name: str, sink: str, outcome: Outcome, rule_id: str
) -> None:
    guard.grant_agreement("acme")
    record = _records(guard)[name]
    assert _decide(guard, record, sink) == (outcome, rule_id)


def test_when_tenant_has_no_agreement_then_own_content_blocked(guard: Guard) -> None:
    record = guard.label_record(DOC, tenant="acme")
    assert _decide(guard, record, "tenant-fine-tune:acme") == (Outcome.BLOCK, "agreement.inactive")


def test_when_agreement_expired_then_fine_tune_blocked(guard: Guard) -> None:
    now = guard.clock()
    guard.store.grant_agreement("acme", now=now - 100, expires_at=now - 1)
    record = guard.label_record(DOC, tenant="acme")
    assert _decide(guard, record, "tenant-fine-tune:acme") == (Outcome.BLOCK, "agreement.inactive")


def test_when_agreement_revoked_then_fine_tune_blocked(guard: Guard) -> None:
    guard.grant_agreement("acme")
    record = guard.label_record(DOC, tenant="acme")
    assert _decide(guard, record, "tenant-fine-tune:acme")[0] is Outcome.ALLOW
    assert guard.revoke_agreement("acme") == 1
    assert _decide(guard, record, "tenant-fine-tune:acme") == (Outcome.BLOCK, "agreement.inactive")


# -- sticky vs permitting labels --------------------------------------------------------


@pytest.mark.parametrize("sink", SHARED)
def test_when_customer_content_is_edited_then_it_stays_blocked(guard: Guard, sink: str) -> None:
    record = guard.label_record(DOC, tenant="acme")
    derived = {**record, "text": record["text"].upper(), "summary": "derived"}
    outcome, rule_id = _decide(guard, derived, sink)
    assert outcome is Outcome.BLOCK
    assert rule_id in {"seal.digest-mismatch", "class.customer-content-shared"}


def test_when_permitting_seal_moved_onto_customer_text_then_blocked(guard: Guard) -> None:
    operator = sealed_record(guard, {"text": "public domain sonnet"}, data_class="operator_public")
    laundered = {"text": "Acme contract: 40,000 units", "_kairo": operator["_kairo"]}
    assert _decide(guard, laundered, "shared-training") == (Outcome.BLOCK, "seal.digest-mismatch")


def test_when_restricting_seal_moved_onto_other_content_then_still_blocked(guard: Guard) -> None:
    guard.grant_agreement("acme")
    seal = guard.label_record(DOC, tenant="acme")["_kairo"]
    other = {"text": "something else", "_kairo": seal}
    assert _decide(guard, other, "shared-training")[0] is Outcome.BLOCK
    assert _decide(guard, other, "tenant-fine-tune:acme")[0] is Outcome.BLOCK


def test_when_operator_record_gains_a_field_then_blocked(guard: Guard) -> None:
    operator = sealed_record(guard, {"text": "public"}, data_class="operator_public")
    assert _decide(guard, {**operator, "extra": 1}, "shared-eval")[1] == "seal.digest-mismatch"


# -- ambient tenant context -----------------------------------------------------------


@pytest.mark.parametrize("sink", SHARED)
def test_when_inside_tenant_context_then_unlabeled_is_that_tenants_content(
    guard: Guard, sink: str
) -> None:
    with guard.tenant_context("acme"):
        outcome, rule_id = _decide(guard, {"text": "anything"}, sink)
    assert outcome is Outcome.BLOCK
    assert rule_id == "seal.missing"


@pytest.mark.parametrize("name", ["anon", "operator"])
def test_when_inside_tenant_context_then_verified_permitting_data_passes(
    guard: Guard, name: str
) -> None:
    record = _records(guard)[name]
    with guard.tenant_context("acme"):
        assert _decide(guard, record, "shared-training")[0] is Outcome.ALLOW


def test_when_sealed_content_checked_inside_tenant_context_then_context_rule(guard: Guard) -> None:
    sealed_text = guard.label_record({"t": "x"}, tenant="acme")
    with guard.tenant_context("acme"):
        outcome, rule_id = _decide(guard, sealed_text, "shared-training")
    assert (outcome, rule_id) == (Outcome.BLOCK, "context.tenant-request")


def test_when_inside_other_tenants_context_then_own_fine_tune_blocked(guard: Guard) -> None:
    guard.grant_agreement("acme")
    record = guard.label_record(DOC, tenant="acme")
    with guard.tenant_context("acme"):
        assert _decide(guard, record, "tenant-fine-tune:acme")[0] is Outcome.ALLOW
    with guard.tenant_context("globex"):
        assert _decide(guard, record, "tenant-fine-tune:acme") == (
            Outcome.BLOCK,
            "tenant.cross-tenant",
        )


def test_when_contexts_nest_with_another_tenant_then_refused(guard: Guard) -> None:
    with guard.tenant_context("acme"), pytest.raises(ValueError, match="already inside"):
        guard.tenant_context("globex").__enter__()


# -- rule loading ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data_classes": ["customer_content"], "sink_kinds": ["shared-training"]}, "I1"),
        ({"data_classes": None}, "I1"),
        ({"data_classes": ["usage_telemetry"], "sink_kinds": ["tenant-fine-tune"]}, "usage"),
        ({"data_classes": ["customer_content"], "sink_kinds": ["tenant-fine-tune"]}, "I2"),
        (
            {
                "data_classes": ["customer_content"],
                "sink_kinds": ["tenant-fine-tune"],
                "tenant": "same",
            },
            "I2",
        ),
    ],
)
def test_when_rule_would_allow_restricted_data_then_policy_refuses(
    kwargs: dict[str, object], message: str
) -> None:
    unsafe = rule("user.unsafe", "allow", "why not", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match=message) as info:
        Policy(extra_rules=[unsafe])
    assert info.value.rule_id == "user.unsafe"


def test_when_two_rules_share_an_id_then_refused() -> None:
    a = rule("user.x", "deny", "a", data_classes=["operator_public"])
    b = rule("user.x", "deny", "b", data_classes=["operator_public"])
    with pytest.raises(PolicyError, match="share the id"):
        Policy(extra_rules=[a, b])


def test_when_user_deny_rule_matches_then_it_restricts_further(guard: Guard) -> None:
    no_scraped = rule(
        "user.no-scraped", "deny", "scraped data is not licensed",
        data_classes=["operator_public"], sources=["scrape-*"],
    )  # fmt: skip
    policy = Policy(extra_rules=[no_scraped])
    facts = _facts(DataClass.OPERATOR_PUBLIC, SinkKind.SHARED_TRAINING, source="scrape-web")
    assert policy.decide(facts).rule == "user.no-scraped"
    assert policy.decide(facts._replace(source="licensed-books")).outcome is Outcome.ALLOW


def _facts(cls: DataClass, kind: SinkKind, **changes: Any) -> Facts:
    base = Facts(cls, kind, Relation.OTHER, True, True, True, False, False, False, "src")
    return base._replace(**changes)


ALL_FACTS = [
    Facts(cls, kind, rel, *flags, source)  # type: ignore[arg-type, call-arg]
    for cls, kind, rel in itertools.product(DataClass, SinkKind, [Relation.SAME, Relation.OTHER])
    for flags in itertools.product([False, True], repeat=6)
    for source in ["upload", "scrape-web"]
]
USER_RULES = [
    rule("user.no-scraped", "deny", "x", data_classes=["operator_public"], sources=["scrape-*"]),
    rule("user.no-eval", "deny", "x", sink_kinds=["shared-eval"], priority=5),
    rule("user.anon-ok-finetune", "allow", "x", data_classes=["anonymized_telemetry"],
         sink_kinds=["tenant-fine-tune"], when={"verified": True}),
]  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), dupes=st.lists(st.integers(0, 99), max_size=6))
def test_decisions_do_not_depend_on_rule_order_or_duplicates(seed: int, dupes: list[int]) -> None:
    reference = Policy(extra_rules=USER_RULES)
    pool = list(USER_RULES) + [list(BUILTIN_RULES + DEFAULT_ALLOW_RULES)[i % 13] for i in dupes]
    random.Random(seed).shuffle(pool)
    shuffled = Policy(extra_rules=pool)
    for facts in ALL_FACTS:
        assert shuffled.decide(facts) == reference.decide(facts)


def test_no_facts_allow_restricted_classes_into_shared_sinks() -> None:
    policy = Policy(extra_rules=USER_RULES)
    for facts in ALL_FACTS:
        decision = policy.decide(facts)
        if decision.outcome is Outcome.ALLOW:
            assert facts.seal_valid
            assert facts.digest_match
            assert not facts.expired
            assert facts.data_class is not DataClass.USAGE_TELEMETRY
            if facts.sink_kind.shared:
                assert facts.data_class in {
                    DataClass.ANONYMIZED_TELEMETRY,
                    DataClass.OPERATOR_PUBLIC,
                }
