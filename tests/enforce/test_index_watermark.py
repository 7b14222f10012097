"""The index watermark at shared sinks: a check waits for the net to catch up with
ingestion, and blocks everything (rule ``index.lagging``) when it does not in time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from corpus import prose
from kg_testing import sealed_record

from kairo_guard import Guard, IsolationViolation
from kairo_guard.core.exceptions import ContentRefused, IndexLagging, StoreError
from kairo_guard.core.types import DataClass, Mode
from kairo_guard.enforce.service import CHECK_BATCH, SinkChecks
from kairo_guard.enforce.vetting import ShardVetting

DOC = prose("watermark-doc", paragraphs=3)
PUBLIC = prose("watermark-public", paragraphs=1)


def _checks(guard: Guard, watermark: Callable[[], None]) -> SinkChecks:
    ctx = replace(guard.checks.context, index_watermark=watermark)
    return SinkChecks(ctx, configured={}, default_mode=Mode.ENFORCE)


def _lagging() -> None:
    raise IndexLagging("the fingerprint index is behind ingestion by 4096 bytes")


def test_when_the_index_lags_then_every_record_of_the_check_blocks_and_says_why(
    guard: Guard,
) -> None:
    calls: list[float] = []

    def watermark() -> None:
        calls.append(time.monotonic())
        _lagging()

    records = [sealed_record(guard, {"text": PUBLIC}, data_class="operator_public"), "unlabeled"]
    records *= CHECK_BATCH  # several batches: the watermark is still awaited once
    report = _checks(guard, watermark).check(records, sink="shared-training", mode="filter")
    assert len(calls) == 1
    assert report.by_rule == {IndexLagging.RULE: len(records)}
    assert "behind ingestion by 4096 bytes" in report.violations[0].reason


def test_when_the_index_lags_in_enforce_mode_then_the_first_record_fails_the_check(
    guard: Guard,
) -> None:
    sealed = sealed_record(guard, {"text": PUBLIC}, data_class="operator_public")
    run = _checks(guard, _lagging).start("shared-training")
    with pytest.raises(IsolationViolation, match=r"index\.lagging"):
        run.admit(sealed)


def test_when_the_watermark_fails_otherwise_then_the_check_fails_closed(guard: Guard) -> None:
    def broken() -> None:
        raise StoreError("the spool cannot be read")

    sealed = sealed_record(guard, {"text": PUBLIC}, data_class="operator_public")
    report = _checks(guard, broken).check([sealed], sink="shared-training")
    assert report.by_rule == {IndexLagging.RULE: 1}
    assert "StoreError: the spool cannot be read" in report.violations[0].reason


def test_when_a_private_sink_is_checked_then_the_watermark_is_not_awaited(
    guard: Guard,
) -> None:
    record = guard.label_record({"text": PUBLIC}, tenant="acme", source="test")
    guard.grant_agreement("acme")
    report = _checks(guard, _lagging).check([record], sink="tenant-fine-tune:acme")
    assert report.ok


def test_when_the_wait_ends_then_what_was_indexed_meanwhile_is_in_the_net(
    guard: Guard,
) -> None:
    sealed = sealed_record(guard, {"text": DOC}, data_class="operator_public")
    public = sealed_record(guard, {"text": PUBLIC}, data_class="operator_public")
    assert guard.check([sealed], sink="shared-training").ok  # the prefilter is loaded now

    def indexer_catches_up() -> None:
        time.sleep(0.02)
        guard.fingerprints.add("acme", DOC)  # what the indexer does while the check waits

    report = _checks(guard, indexer_catches_up).check([sealed, public], sink="shared-training")
    assert report.by_rule == {"fingerprint.tenant-content": 1, "allow.operator-public": 1}


def test_when_the_index_lags_then_vetting_vouches_for_nothing(guard: Guard) -> None:
    vetting = ShardVetting(
        DataClass.OPERATOR_PUBLIC,
        guard.vetting.writer,
        guard.fingerprints,
        None,
        policy=guard.vetting.policy,
        store=guard.store,
        audit=guard.audit,
        pseudonym=guard.keys.pseudonym,
        index_watermark=_lagging,
    )
    with pytest.raises(ContentRefused) as refused:
        vetting.seal({"text": PUBLIC}, source="test")
    assert isinstance(refused.value, IndexLagging)
    assert refused.value.rule == "index.lagging"
