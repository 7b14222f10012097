"""Retention: expiry set at sealing from class, source and tenant periods; sinks refuse
expired content; the sweep deletes expired dataset records and provenance rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from kg_testing import make_guard, running_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from tenant_data_support import DAY, T0, Clock

from kairo_guard import Guard, KeyRing
from kairo_guard.core.types import SEAL_FIELD, DataClass, Sealed
from kairo_guard.guard import AUDIT_DIR_NAME
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import PROVENANCE_HEADER, GuardMiddleware
from kairo_guard.tenancy.retention import RetentionPolicy, is_agent_run


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(tmp_path: Path, ring: KeyRing, clock: Clock) -> Iterator[Guard]:
    with make_guard(tmp_path / "timed", ring=ring, pii_gate=False, clock=clock) as guard:
        yield guard


def _expiry(guard: Guard, tenant: str, source: str, cls: str = "customer_content") -> int | None:
    label = guard.open_seal(guard.seal({"n": 1}, tenant=tenant, source=source, data_class=cls))
    return None if label.expires_at is None else label.expires_at - label.created_at


@pytest.mark.parametrize(
    ("source", "agent"),
    [("agent-run", True), ("agent-run:summarize", True), ("agent-runner", False), ("api", False)],
)
def test_agent_run_logs_are_recognised_by_their_source(source: str, agent: bool) -> None:
    assert is_agent_run(source) is agent


def test_when_nothing_is_configured_then_agent_run_logs_expire_after_90_days(guard: Guard) -> None:
    assert _expiry(guard, "acme", "agent-run:chat") == 90 * DAY
    assert _expiry(guard, "acme", "upload") is None


def test_config_sets_class_and_agent_run_periods(tmp_path: Path, ring: KeyRing) -> None:
    config = tmp_path / "kairo-guard.toml"
    config.write_text('[retention]\ncustomer_content = "30d"\nagent_run = "10d"\n')
    with make_guard(tmp_path / "s", ring=ring, pii_gate=False, config_file=config) as guard:
        assert guard.settings.retention == {DataClass.CUSTOMER_CONTENT: 30 * DAY}
        assert _expiry(guard, "acme", "agent-run:chat") == 10 * DAY
        assert _expiry(guard, "acme", "upload") == 30 * DAY
        assert _expiry(guard, "acme", "upload", "usage_telemetry") is None


def test_tenant_periods_override_the_defaults_for_that_tenant_only(guard: Guard) -> None:
    guard.set_retention("acme", "agent_run", 180 * DAY)
    guard.set_retention("acme", "usage_telemetry", 7 * DAY)
    assert _expiry(guard, "acme", "agent-run:chat") == 180 * DAY
    assert _expiry(guard, "acme", "events", "usage_telemetry") == 7 * DAY
    assert _expiry(guard, "globex", "agent-run:chat") == 90 * DAY
    guard.set_retention("acme", "agent_run", None)
    assert _expiry(guard, "acme", "agent-run:chat") == 90 * DAY


def test_a_tenant_class_period_also_covers_its_agent_run_logs(guard: Guard) -> None:
    guard.set_retention("acme", "customer_content", 30 * DAY)
    assert _expiry(guard, "acme", "agent-run:chat") == 30 * DAY
    assert _expiry(guard, "acme", "upload") == 30 * DAY


def test_tenant_periods_set_elsewhere_are_seen_after_the_refresh(guard: Guard) -> None:
    ticks = [0.0]
    policy = RetentionPolicy(guard.store, {}, 90 * DAY, monotonic=lambda: ticks[0])
    assert policy.seconds("acme", DataClass.CUSTOMER_CONTENT, "x") is None
    guard.store.set_retention("acme", "customer_content", 5 * DAY)  # another process
    assert policy.seconds("acme", DataClass.CUSTOMER_CONTENT, "x") is None  # cached
    ticks[0] += 6
    assert policy.seconds("acme", DataClass.CUSTOMER_CONTENT, "x") == 5 * DAY


@pytest.mark.parametrize(
    ("tenant", "scope", "seconds", "message"),
    [
        ("acme", "operator_public", DAY, "unknown retention class"),
        ("acme", "forever", DAY, "unknown retention class"),
        ("acme", "agent_run", 0, "must be positive"),
        ("not a tenant", "agent_run", DAY, "invalid tenant id"),
    ],
)
def test_bad_tenant_periods_are_refused(
    guard: Guard, tenant: str, scope: str, seconds: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        guard.set_retention(tenant, scope, seconds)


@pytest.mark.parametrize(
    "kind", ["tenant-fine-tune:acme", "shared-training", "shared-fine-tune", "shared-eval"]
)
def test_when_retention_runs_out_then_every_sink_refuses_the_content(
    timed: Guard, clock: Clock, kind: str
) -> None:
    timed.grant_agreement("acme")
    record = timed.label_record({"log": "agent said hello"}, tenant="acme", source="agent-run:x")
    sink = timed.resolve_sink("s", kind=kind)
    if kind.startswith("tenant"):
        assert timed.check([record], sink=sink).allowed == 1
    clock.advance(90 * DAY)
    report = timed.check([record], sink=sink)
    assert report.allowed == 0
    assert report.violations[0].rule == "retention.expired"


def test_middleware_seals_with_the_agent_run_period_and_records_provenance(
    timed: Guard, clock: Clock
) -> None:
    key = new_api_key(timed.store, "acme")
    timed.grant_agreement("acme")

    async def ingest(request: Request) -> PlainTextResponse:
        await request.body()
        return PlainTextResponse("stored")

    app = GuardMiddleware(
        Starlette(routes=[Route("/runs", ingest, methods=["POST"])]),
        guard=timed,
        source="agent-run:chat",
    )
    body = b"the agent's transcript of the run"
    with running_server(app) as url:
        response = httpx.post(
            f"{url}/runs", content=body, headers={"authorization": f"Bearer {key}"}
        )
    assert response.status_code == 200
    seal = response.headers[PROVENANCE_HEADER.decode()]
    label = timed.open_seal(seal)
    assert label.expires_at == T0 + 90 * DAY
    timed.wait_indexed()  # the spool's indexer records provenance rows
    (row,) = timed.store.list_provenance("acme")
    assert (row.digest, row.source, row.expires_at) == (
        label.digest,
        "agent-run:chat",
        T0 + 90 * DAY,
    )
    sink = timed.resolve_sink("ft", kind="tenant-fine-tune:acme")
    assert timed.check([Sealed(body, seal)], sink=sink).allowed == 1
    clock.advance(90 * DAY)
    assert timed.check([Sealed(body, seal)], sink=sink).violations[0].rule == "retention.expired"
    report = timed.sweep_retention()
    assert report.total("provenance") == 1
    assert timed.store.list_provenance("acme") == []


def _dataset(guard: Guard, root: Path) -> tuple[str, Path]:
    guard.grant_agreement("acme")
    builder = guard.tenant_dataset("acme")
    for i in range(3):
        builder.add(guard.label_record({"log": f"run {i}"}, tenant="acme", source="agent-run:x"))
    for i in range(2):
        builder.add(guard.label_record({"doc": f"contract {i}"}, tenant="acme", source="upload"))
    path = root / "ds"
    manifest = builder.write(path)
    return manifest.dataset_id, path


def test_sweep_prunes_expired_dataset_records_and_resigns_the_manifest(
    timed: Guard, clock: Clock, tmp_path: Path, ring: KeyRing
) -> None:
    dataset_id, path = _dataset(timed, tmp_path)
    old_manifest = (path / "manifest.json").read_bytes()
    assert timed.sweep_retention().total("dataset_records") == 0  # nothing expired yet
    assert (path / "manifest.json").read_bytes() == old_manifest  # and nothing rewritten
    clock.advance(91 * DAY)
    records_before = (path / "records.jsonl").read_bytes()
    dry = timed.sweep_retention(dry_run=True)
    assert dry.total("dataset_records") == 3
    assert (path / "records.jsonl").read_bytes() == records_before
    report = timed.sweep_retention()
    pseudonym = ring.pseudonym("acme")
    assert report.removed["dataset_records"] == {pseudonym: {"customer_content": 3}}
    assert report.datasets == {dataset_id: {"kept": 2, "removed": 3}}
    reopened = timed.open_dataset(path)
    assert [r.get("doc") for r in reopened] == ["contract 0", "contract 1"]
    assert reopened.manifest.supersedes is not None
    assert timed.sweep_retention().total("dataset_records") == 0  # idempotent


def test_sweep_counts_provenance_rows_per_tenant_and_class_and_audits_pseudonyms_only(
    timed: Guard, clock: Clock, ring: KeyRing
) -> None:
    for tenant, source in [("acme", "agent-run:x"), ("acme", "upload"), ("globex", "agent-run:y")]:
        record = timed.label_record({"t": f"{tenant} {source}"}, tenant=tenant, source=source)
        timed.tenancy.retention.record_provenance(record[SEAL_FIELD])
    clock.advance(90 * DAY)
    report = timed.sweep_retention()
    assert report.removed["provenance"] == {
        ring.pseudonym("acme"): {"customer_content": 1},
        ring.pseudonym("globex"): {"customer_content": 1},
    }
    assert [r.source for r in timed.store.list_provenance("acme")] == ["upload"]
    timed.audit.flush()
    log = (timed.settings.home / AUDIT_DIR_NAME / "audit.jsonl").read_bytes()
    entries = [orjson.loads(line) for line in log.splitlines()]
    assert any(e["event"] == "retention.sweep" for e in entries)
    assert b"acme" not in log
    assert b"globex" not in log
