"""What the text reader cannot read, or a record with two seals, never passes a sink."""

from __future__ import annotations

import pytest
from kg_testing import mint_unchecked, sealed_record

from kairo_guard import Guard, Sealed

DOC = "Acme's supplier contract renews in May at a price nobody outside the board has seen."


@pytest.mark.parametrize("sink", ["shared-training", "tenant-fine-tune:acme"])
def test_when_a_sealed_record_carries_another_seal_inside_then_it_is_refused(
    guard: Guard, sink: str
) -> None:
    guard.grant_agreement("acme")
    inner = sealed_record(guard, {"text": "public"}, data_class="operator_public")
    content = {"text": DOC, "_kairo": inner["_kairo"]}
    outer = guard.label_record({"text": DOC}, tenant="acme")["_kairo"]
    report = guard.check([Sealed(content, outer)], sink=sink)
    assert [v.rule for v in report.violations] == ["seal.ambiguous"]
    assert DOC not in report.violations[0].reason


def test_when_bytes_that_are_not_text_carry_a_permitting_seal_then_a_shared_sink_blocks(
    guard: Guard,
) -> None:
    blob = "Acme confidential".encode("utf-16")  # not UTF-8: read as replacement characters
    seal = mint_unchecked(guard, blob, data_class="operator_public")
    report = guard.check([Sealed(blob, seal)], sink="shared-training")
    assert [v.rule for v in report.violations] == ["content.unencodable"]
    assert "not UTF-8" in report.violations[0].reason
