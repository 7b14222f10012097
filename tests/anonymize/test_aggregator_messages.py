"""The opt-in message path of the telemetry aggregator (scrub, re-check, k tenants)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from kg_testing import EVERY_TENANT, register_tenants

from kairo_guard import Guard
from kairo_guard.anonymize.aggregator import AggregationReport, TelemetryAggregator
from kairo_guard.detect.pii.check import MessageScrubber
from kairo_guard.detect.pii.gate import PiiGate

SECRET = (
    "Acme board minutes: the Lisbon plant doubles output in the third quarter and forty "
    "engineers move to the battery line under a supplier agreement nobody has seen yet."
)


@pytest.fixture(scope="module")
def gate() -> PiiGate:
    return PiiGate()


def aggregator(guard: Guard, **options: Any) -> TelemetryAggregator:
    """The aggregator wired as the CLI wires it (the guard's sealer, audit log,
    pseudonyms), except that every well-formed tenant id counts as an existing tenant
    unless ``tenants=`` says otherwise (the tests of that pass the store's)."""
    options.setdefault("tenants", EVERY_TENANT)
    options.setdefault("epsilon", None)  # exact counts, unless a test is about the noise
    return TelemetryAggregator(
        guard.telemetry_vetting, audit=guard.audit, pseudonym=guard.keys.pseudonym, **options
    )


@pytest.fixture
def guard(pii_guard: Guard) -> Guard:
    return pii_guard


def _event(tenant: str, message: str) -> dict[str, Any]:
    return {"tenant": tenant, "route": "/v1/chat", "model": "small", "latency_ms": 120,
            "status": 502, "error_type": "UPSTREAM", "error_message": message,
            "ts": "2026-11-01T10:05:00+00:00"}  # fmt: skip


def _aggregate(guard: Guard, gate: PiiGate, events: list[dict[str, Any]], **kw: Any) -> Any:
    report = AggregationReport()
    scrub = MessageScrubber(gate, guard.fingerprints)
    out = aggregator(guard, k=10, scrub=scrub, **kw).aggregate(events, report)
    return out, report


def test_a_scrubbed_message_that_k_tenants_sent_is_published_without_pii(
    guard: Guard, gate: PiiGate
) -> None:
    events = [
        _event(f"t{i:02d}", f"upstream billing failed for user{i}@example.com") for i in range(12)
    ]
    (row,), report = _aggregate(guard, gate, events)
    assert row["error_messages"] == [["upstream billing failed for <EMAIL_ADDRESS>", 12]]
    assert b"example.com" not in orjson.dumps(row)
    assert report.messages_dropped == 0
    assert guard.check([row], sink=guard.resolve_sink("s", kind="shared-training")).ok


def test_a_message_fewer_than_k_tenants_sent_is_not_published(guard: Guard, gate: PiiGate) -> None:
    events = [_event(f"t{i:02d}", "upstream billing failed") for i in range(12)]
    events[0] = _event("t00", "cluster eu-west-7 rebooted by the on-call team")
    (row,), _ = _aggregate(guard, gate, events)
    assert row["error_messages"] == [["upstream billing failed", 11]]


def test_a_message_holding_a_tenants_text_is_dropped(guard: Guard, gate: PiiGate) -> None:
    guard.index_content("acme", {"text": SECRET})
    events = [_event(f"t{i:02d}", f"parse error near: {SECRET}") for i in range(12)]
    (row,), report = _aggregate(guard, gate, events)
    assert row["error_messages"] == []
    assert report.messages_dropped == 12
    assert "Lisbon" not in orjson.dumps(row).decode()


def test_without_opting_in_there_is_no_message_field(guard: Guard) -> None:
    events = [_event(f"t{i:02d}", "upstream billing failed") for i in range(12)]
    (row,) = aggregator(guard, k=10).aggregate(events)
    assert "error_messages" not in row


def test_cli_keep_messages(cli_env: dict[str, str], tmp_path: Path) -> None:
    from kairo_guard.cli.main import main

    with Guard() as state:  # the CLI's state directory
        register_tenants(state, [f"t{i:02d}" for i in range(12)])
    lines = [_event(f"t{i:02d}", f"timeout for +1 415 555 01{i:02d}") for i in range(12)]
    (tmp_path / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    args = ["telemetry", "aggregate", "events.jsonl", "--out", "stats.jsonl", "--keep-messages"]
    assert main(args) == 0
    (row,) = [orjson.loads(x) for x in (tmp_path / "stats.jsonl").read_bytes().splitlines()]
    assert row["error_messages"] == [["timeout for <PHONE_NUMBER>", 12]]
    assert main(["scan", "stats.jsonl", "--sink", "shared-training"]) == 0


def test_a_message_sent_by_one_tenant_fewer_than_k_is_not_published(
    guard: Guard, gate: PiiGate
) -> None:
    """k - 1 tenants send one message, one more tenant a different one: the group has k
    tenants and is published, the message is not; with k senders it is."""
    few = [_event(f"t{i:02d}", "upstream billing failed") for i in range(9)]
    few.append(_event("t09", "cache warm-up slow"))
    (row,), _ = _aggregate(guard, gate, few)
    assert row["count"] == 10
    assert row["error_messages"] == []
    enough = [_event(f"t{i:02d}", "upstream billing failed") for i in range(10)]
    (row,), _ = _aggregate(guard, gate, enough)
    assert row["error_messages"] == [["upstream billing failed", 10]]
