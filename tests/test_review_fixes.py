"""Regression tests for fail-open paths found in review (each failed before its fix)."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from kg_testing import make_guard, mint_unchecked

from kairo_guard import ContentRefused, Guard, IsolationViolation
from kairo_guard.anonymize.aggregator import AggregationReport, TelemetryAggregator
from kairo_guard.cli.main import main
from kairo_guard.cli.records import scan_stream

SECRET = (
    "Acme board minutes: the Lisbon plant doubles output in the third quarter and forty "
    "engineers move to the battery line under a supplier agreement nobody has seen yet."
)


@pytest.fixture
def net(tmp_path: Path) -> Guard:
    g = make_guard(tmp_path / "net", pii_gate=False)
    g.index_content("acme", {"text": SECRET})
    return g


def test_a_duplicate_key_cannot_carry_a_secret_past_a_shared_sink(net: Guard) -> None:
    public = {"text": "A public sentence about the weather in spring."}
    seal = mint_unchecked(net, public, data_class="operator_public")
    line = b'{"text":' + orjson.dumps(SECRET) + b',"text":"' + public["text"].encode()
    line += b'","_kairo":"' + seal.encode() + b'"}'
    out = io.BytesIO()
    run = net.start_check(net.resolve_sink("s", kind="shared-training"), mode="filter")
    scan_stream(run, io.BytesIO(line + b"\n"), out, 1 << 20)
    assert b"Lisbon" not in out.getvalue()


def test_object_keys_are_text_for_the_fingerprint_net(net: Guard) -> None:
    with pytest.raises(ContentRefused):
        net.seal_operator_data({SECRET: "x"}, source="t")


def test_a_slow_stream_sees_a_revoked_agreement(
    net: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kairo_guard.enforce.check.REFRESH_SECONDS", 0.0)
    net.grant_agreement("acme")
    records = [net.label_record({"i": i}, tenant="acme") for i in range(3)]
    stream = net.checked(iter(records), sink=net.resolve_sink("ft", kind="tenant-fine-tune:acme"))
    assert next(stream) == records[0]
    net.revoke_agreement("acme")
    with pytest.raises(IsolationViolation):
        next(stream)


def test_a_default_argument_of_a_guarded_function_is_checked(net: Guard) -> None:
    @net.sink("router", kind="shared-training")
    def train(records: list[object] = [{"text": "unsealed"}]) -> int:  # noqa: B006
        return len(records)

    with pytest.raises(IsolationViolation):
        train()


def test_the_audit_log_never_holds_a_raw_tenant_id_from_a_sink_name(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n')
    assert main(["scan", "in.jsonl", "--sink", "tenant-fine-tune:acme-corp"]) == 1
    audit = (Path(cli_env["KAIRO_GUARD_HOME"]) / "audit" / "audit.jsonl").read_bytes()
    assert b"acme-corp" not in audit


def _event(tenant: str, latency: float, ts: str = "2026-11-01T10:00:00+00:00") -> dict[str, object]:
    return {"tenant": tenant, "route": "/v1/chat", "model": "small", "latency_ms": latency,
            "status": 200, "ts": ts}  # fmt: skip


def test_a_group_dominated_by_one_tenant_is_suppressed(net: Guard) -> None:
    events = [_event(f"t{i}", 100.0) for i in range(9)] + [_event("acme", 777.0)] * 100
    assert TelemetryAggregator(net, k=10).aggregate(events) == []
    balanced = [_event(f"t{i}", 100.0) for i in range(10)]
    assert len(TelemetryAggregator(net, k=10).aggregate(balanced)) == 1


def test_timestamps_outside_unix_time_are_skipped_not_a_crash(net: Guard) -> None:
    report = AggregationReport()
    events = [_event(f"t{i}", 1.0, ts="0001-01-01T00:30:00+01:00") for i in range(10)]
    assert TelemetryAggregator(net, k=10).aggregate(events, report) == []
    assert report.skipped == {"ts": 10}
