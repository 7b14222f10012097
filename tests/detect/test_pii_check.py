"""The PII gate at shared sinks and in operator labelling (invariant I3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kg_testing import add_signer, mint_unchecked, sealed_record

from kairo_guard import ContentRefused, Guard, KeyRing, Sealed


@pytest.fixture
def guard(pii_guard: Guard) -> Guard:
    return pii_guard


def _shared(guard: Guard) -> object:
    return guard.resolve_sink("router", kind="shared-training")


def test_operator_data_with_pii_is_blocked_at_shared_sinks(guard: Guard) -> None:
    clean = sealed_record(guard, {"text": "timeout after 30 s on route /v1/chat"},
                          data_class="operator_public")  # fmt: skip
    leaky = sealed_record(guard, {"text": "charged card 4111 1111 1111 1111 after timeout"},
                          data_class="operator_public")  # fmt: skip
    report = guard.check([clean, leaky], sink=_shared(guard))  # type: ignore[arg-type]
    assert [(v.index, v.rule) for v in report.violations] == [(1, "pii.detected")]
    assert "CREDIT_CARD" in report.violations[0].reason
    assert "4111" not in report.violations[0].reason


@pytest.mark.parametrize(
    "hidden",
    ["jane\u200b.doe@acme.com", "jane.doe@ac\u00adme.com", "\x00".join("jane.doe@acme.com")],
    ids=["zero-width-space", "soft-hyphen", "nul-interleaved"],
)
def test_pii_hidden_by_invisible_characters_is_still_blocked(guard: Guard, hidden: str) -> None:
    # anonymized telemetry: the strict policy, which looks for every address
    leaky = sealed_record(guard, {"text": f"escalated by {hidden} after timeout"},
                          data_class="anonymized_telemetry")  # fmt: skip
    report = guard.check([leaky], sink=_shared(guard))  # type: ignore[arg-type]
    assert [v.rule for v in report.violations] == ["pii.detected"]
    assert guard.pii is not None
    gate = guard.pii._get()
    # offsets into the text as given cannot be trusted: the masking caller must block
    assert gate.spans(f"escalated by {hidden}") is None
    assert gate.spans("escalated by jane.doe@acme.com")


def test_label_operator_public_refuses_pii(guard: Guard) -> None:
    with pytest.raises(ContentRefused) as info:
        guard.seal_operator_data({"note": "Maria Garcia, SSN 536-22-8421"}, source="x")
    assert info.value.rule == "pii.detected"
    assert guard.seal_operator_data({"note": "p95 latency 120 ms"}, source="x").startswith("kp1.")


def _guard_with(tmp_path: Path, pii: str) -> Guard:
    config = tmp_path / "kairo-guard.toml"
    config.write_text(f"[pii]\n{pii}\n")
    add_signer(tmp_path / "s")
    return Guard(home=tmp_path / "s", key=KeyRing.generate(), config_file=config, env={})


def test_when_the_model_is_missing_then_records_needing_the_gate_are_blocked(
    tmp_path: Path,
) -> None:
    with _guard_with(tmp_path, 'model = "no_such_model_package"') as guard:
        record = sealed_record(guard, {"text": "all good"}, data_class="operator_public")
        report = guard.check([record], sink=_shared(guard))  # type: ignore[arg-type]
        assert report.violations[0].rule == "pii.unavailable"
        assert "no_such_model_package" in report.violations[0].reason
        numbers = [12.5, 30.0, 99.9]  # no text at all: nothing for the gate to read
        seal = mint_unchecked(guard, numbers, data_class="operator_public")
        assert guard.check(Sealed(numbers, seal), sink=_shared(guard)).ok  # type: ignore[arg-type]


def test_when_disabled_in_config_then_the_gate_does_not_run(tmp_path: Path) -> None:
    with _guard_with(tmp_path, "enabled = false") as guard:
        record = sealed_record(
            guard, {"text": "mail jane.doe@acme.com"}, data_class="operator_public"
        )
        assert guard.check([record], sink=_shared(guard)).ok  # type: ignore[arg-type]
