"""The telemetry aggregator: k-anonymous statistics, the one open door to shared sinks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from kg_testing import EVERY_TENANT, register_tenants

from kairo_guard import Guard, Outcome
from kairo_guard.anonymize.aggregator import AggregationReport, TelemetryAggregator
from kairo_guard.cli.main import main

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
SECRET = "Acme merger memo: buy Initech for forty million before March"


def aggregator(guard: Guard, **options: Any) -> TelemetryAggregator:
    """The aggregator wired as the CLI wires it (the guard's sealer, audit log,
    pseudonyms), except that every well-formed tenant id counts as an existing tenant
    unless ``tenants=`` says otherwise (the tests of that pass the store's)."""
    options.setdefault("tenants", EVERY_TENANT)
    options.setdefault("epsilon", None)  # exact counts, unless a test is about the noise
    return TelemetryAggregator(
        guard.telemetry_vetting, audit=guard.audit, pseudonym=guard.keys.pseudonym, **options
    )


def event(tenant: str, *, minutes: int = 0, route: str = "/v1/chat", model: str = "small",
          latency: float = 100.0, status: int = 200, error_type: str = "",
          message: str = "") -> dict[str, Any]:  # fmt: skip
    return {
        "tenant": tenant,
        "route": route,
        "model": model,
        "latency_ms": latency,
        "status": status,
        "error_type": error_type,
        "error_message": message,
        "ts": (T0 + timedelta(minutes=minutes)).isoformat(),
    }


def tenants(n: int, prefix: str = "t") -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(n)]


def shared(guard: Guard) -> Any:
    return guard.resolve_sink("router", kind="shared-training")


def test_a_group_of_k_minus_1_tenants_never_appears(guard: Guard) -> None:
    k = 5
    events = [event(t) for t in tenants(k)]  # /v1/chat small: 5 tenants
    events += [event(t, model="large") for t in tenants(k - 1, "u")]  # 4 tenants
    events += [event(t, minutes=90) for t in tenants(k - 1, "v")]  # next window, 4 tenants
    out = aggregator(guard, k=k).aggregate(events)
    assert [(r["route"], r["model"], r["count"]) for r in out] == [("/v1/chat", "small", k)]


def test_groups_split_across_windows_are_suppressed_in_each(guard: Guard) -> None:
    events = [event(t, minutes=0 if i % 2 else 61) for i, t in enumerate(tenants(6))]
    report = AggregationReport()
    assert aggregator(guard, k=4).aggregate(events, report) == []
    assert report.suppressed_groups == 2


def test_a_value_is_published_only_once_k_tenants_used_it(guard: Guard) -> None:
    events = [event(t) for t in tenants(5)]
    events += [event(t, route="/docs/acme-merger-plan") for t in tenants(4, "w")]
    assert {r["route"] for r in aggregator(guard, k=5).aggregate(events)} == {
        "/v1/chat"  # 4 users: the value is withheld and its "other" group suppressed
    }
    events.append(event("w04", route="/docs/acme-merger-plan"))
    assert {r["route"] for r in aggregator(guard, k=5).aggregate(events)} == {
        "/v1/chat",
        "/docs/acme-merger-plan",
    }


def test_values_each_tenant_uses_alone_are_pooled_as_other(guard: Guard) -> None:
    events = [event(t, route=f"/private/{t}-report") for t in tenants(5)]
    out = aggregator(guard, k=5).aggregate(events)
    assert [(r["route"], r["count"]) for r in out] == [("other", 5)]


def test_declared_enumerations_are_the_only_values_published(guard: Guard) -> None:
    events = [event(t, model="large" if i % 2 else "small") for i, t in enumerate(tenants(10))]
    out = aggregator(guard, k=5, enumerations={"model": ["small"]}).aggregate(events)
    assert sorted(r["model"] for r in out) == ["other", "small"]


def test_statistics_are_exact(guard: Guard) -> None:
    latencies = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1000]
    events = [
        event(t, latency=lat, error_type="TIMEOUT" if i < 3 else "")
        for i, (t, lat) in enumerate(zip(tenants(10), latencies, strict=True))
    ]
    (row,) = aggregator(guard, k=10).aggregate(events)
    assert (row["count"], row["error_rate"]) == (10, 0.3)
    # p95 and p99 would be the 1000 ms of the one tenant above the rest: withheld
    assert (row["latency_ms_p50"], row["latency_ms_p95"], row["latency_ms_p99"]) == (50, None, None)
    assert row["window_start"] == T0.isoformat()


def test_when_one_tenant_makes_the_slow_tail_then_its_percentiles_are_withheld(
    guard: Guard,
) -> None:
    """Nine accounts send fast events; the tenant they watch sends slow ones: the p95 and
    p99 would be that tenant's own latencies. Spread over many tenants, a percentile whose
    tail holds several tenants is published."""
    fast = [event(t, latency=10.0) for t in tenants(9, "s") for _ in range(10)]
    victim = [event("victim", latency=900.0 + i) for i in range(9)]
    (row,) = aggregator(guard, k=10).aggregate(fast + victim)
    assert (row["latency_ms_p50"], row["latency_ms_p95"], row["latency_ms_p99"]) == (
        10.0,
        None,
        None,
    )
    spread = [event(t, latency=900.0 + i) for i, t in enumerate(tenants(9, "v"))]
    (row,) = aggregator(guard, k=10).aggregate(fast + spread)
    assert row["latency_ms_p95"] == 904.0  # its tail: five tenants
    assert row["latency_ms_p99"] is None  # 99 events: the p99 is the one slowest event


def test_output_has_no_tenant_ids_pseudonyms_or_free_text(guard: Guard) -> None:
    events = [event(t, message=f"{SECRET}; contact jane.doe@acme.com") for t in tenants(12)]
    out = aggregator(guard, k=10).aggregate(events)
    blob = orjson.dumps(out).decode()
    assert out
    for t in tenants(12):
        assert f'"{t}"' not in blob
        assert guard.keys.pseudonym(t) not in blob
    assert "Acme" not in blob
    assert "acme.com" not in blob
    assert "error_message" not in blob
    assert "tenant" not in blob


def test_output_passes_shared_sinks_and_tampering_does_not(guard: Guard) -> None:
    out = aggregator(guard, k=3).aggregate([event(t) for t in tenants(3)])
    assert guard.check(out, sink=shared(guard)).ok
    changed = {**out[0], "count": out[0]["count"] + 1}
    claimed = {**{k: v for k, v in out[0].items() if k != "_kairo"}, "_kairo": "kg1.k1.x.y"}
    raw = event("t00")
    report = guard.check([changed, claimed, raw], sink=shared(guard))
    assert [v.rule for v in report.violations] == [
        "seal.digest-mismatch",
        "seal.invalid",
        "seal.missing",
    ]


def test_output_is_anonymized_telemetry_with_no_tenant(guard: Guard) -> None:
    (row,) = aggregator(guard, k=2).aggregate([event(t) for t in tenants(2)])
    label = guard.open_seal(row["_kairo"])
    assert (label.data_class.value, label.tenant) == ("anonymized_telemetry", None)
    sink = guard.resolve_sink("ft", kind="tenant-fine-tune:t00")
    assert guard.check([row], sink=sink).violations[0].rule == (
        "class.anonymized-telemetry-tenant-sink"
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"tenant": None}, "tenant"),
        ({"tenant": "bad tenant"}, "tenant"),
        ({"latency_ms": "fast"}, "latency_ms"),
        ({"latency_ms": True}, "latency_ms"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": float("nan")}, "latency_ms"),
        ({"ts": "2026-11-01T10:00:00"}, "ts"),  # no zone: never guessed
        ({"ts": "yesterday"}, "ts"),
        ({"route": {"path": "/x"}}, "route"),
    ],
)
def test_malformed_events_are_counted_and_skipped(
    guard: Guard, change: dict[str, Any], reason: str
) -> None:
    report = AggregationReport()
    events = [event(t) for t in tenants(3)] + [{**event("x"), **change}]
    out = aggregator(guard, k=3).aggregate(events, report)
    assert report.skipped == {reason: 1}
    assert out[0]["count"] == 3


def test_k_below_two_is_refused(guard: Guard) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        aggregator(guard, k=1)


def test_cli_aggregates_and_its_output_scans_clean(cli_env: dict[str, str], tmp_path: Path) -> None:
    with Guard() as guard:  # the CLI's state directory
        register_tenants(guard, [*tenants(12), *tenants(2, "r")])
    lines = [event(t, minutes=i) for i, t in enumerate(tenants(12))]
    lines += [event(t, route="/rare") for t in tenants(2, "r")]
    text = "\n".join(json.dumps(e) for e in lines) + "\n{not json\n"
    (tmp_path / "events.jsonl").write_text(text)
    code = main(["telemetry", "aggregate", "events.jsonl", "--k", "10", "--window", "1h",
                 "--out", "stats.jsonl"])  # fmt: skip
    assert code == 0
    rows = [orjson.loads(line) for line in (tmp_path / "stats.jsonl").read_bytes().splitlines()]
    ((route, count, epsilon),) = [(r["route"], r["count"], r["epsilon"]) for r in rows]
    assert (route, epsilon) == ("/v1/chat", 1.0)  # counts are noised by default
    assert abs(count - 12) <= 30  # P(|noise| > 30) at epsilon 1 is about 1e-6
    assert main(["scan", "stats.jsonl", "--sink", "shared-training"]) == 0
    code = main(["telemetry", "aggregate", "events.jsonl", "--k", "10", "--exact-counts",
                 "--out", "exact.jsonl"])  # fmt: skip
    assert code == 0
    (exact,) = [orjson.loads(line) for line in (tmp_path / "exact.jsonl").read_bytes().splitlines()]
    assert (exact["count"], exact["epsilon"]) == (12, None)
    assert main(["scan", "events.jsonl", "--sink", "shared-training"]) == 1


def test_decisions_inside_a_tenant_context_still_pass_verified_telemetry(guard: Guard) -> None:
    out = aggregator(guard, k=2).aggregate([event(t) for t in tenants(2)])
    with guard.tenant_context("t00"):
        run = guard.checks.start(shared(guard))
        assert run.decide(out[0]).outcome is Outcome.ALLOW
        run.finish()


def test_when_one_tenant_has_most_of_a_groups_events_then_the_group_is_suppressed(
    guard: Guard,
) -> None:
    events = [event(f"t{i}") for i in range(9)] + [event("acme", latency=777.0)] * 100
    assert aggregator(guard, k=10).aggregate(events) == []
    balanced = [event(f"t{i}") for i in range(10)]
    assert len(aggregator(guard, k=10).aggregate(balanced)) == 1


def test_when_a_timestamp_is_outside_unix_time_then_the_event_is_skipped_not_a_crash(
    guard: Guard,
) -> None:
    report = AggregationReport()
    old = {**event("t0"), "ts": "0001-01-01T00:30:00+01:00"}
    events = [{**old, "tenant": f"t{i}"} for i in range(10)]
    assert aggregator(guard, k=10).aggregate(events, report) == []
    assert report.skipped == {"ts": 10}


def test_when_given_the_guard_instead_of_its_collaborators_then_it_fails_at_construction(
    guard: Guard,
) -> None:
    with pytest.raises(TypeError):
        TelemetryAggregator(guard, k=10)  # type: ignore[arg-type,call-arg]


def test_when_tenant_ids_are_invented_then_they_publish_nothing(guard: Guard) -> None:
    """Ten ids nobody holds, with one real tenant's rare route, make no group of ten."""
    register_tenants(guard, ["acme"])
    route = "/docs/acme-merger-with-globex-2026"
    events = [event("acme", route=route)] + [event(f"sybil{i}", route=route) for i in range(10)]
    report = AggregationReport()
    out = aggregator(guard, k=10, tenants=guard.store.tenant_ids()).aggregate(events, report)
    assert out == []
    assert report.skipped == {"unknown-tenant": 10}
    real = [f"real{i}" for i in range(10)]
    register_tenants(guard, real)
    published = aggregator(guard, k=10, tenants=guard.store.tenant_ids()).aggregate(
        [event(t) for t in real]
    )
    assert [row["count"] for row in published] == [10]


def test_when_a_tenant_is_erased_then_its_events_no_longer_count(guard: Guard) -> None:
    real = tenants(10)
    register_tenants(guard, real)
    guard.erase_tenant("t09")
    report = AggregationReport()
    out = aggregator(guard, k=10, tenants=guard.store.tenant_ids()).aggregate(
        [event(t) for t in real], report
    )
    assert out == []
    assert report.skipped == {"unknown-tenant": 1}


def test_cli_skips_events_of_tenants_the_store_does_not_know(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    with Guard() as guard:
        register_tenants(guard, tenants(9))
    lines = [event(t) for t in tenants(12)]  # three of them do not exist
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    code = main(["telemetry", "aggregate", "events.jsonl", "--k", "10", "--out", "stats.jsonl"])
    assert code == 0
    assert (tmp_path / "stats.jsonl").read_bytes() == b""
