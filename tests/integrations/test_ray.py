"""Ray Data on a real local cluster of 2 CPUs: the guard runs as ``map_batches`` on
workers that never open the database; a laundered record is caught in both modes;
customer content is refused at a shared sink and allowed at its tenant's fine-tune; the
driver's report adds up every worker's decisions and is audited."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import ray
from corpus import prose
from kg_testing import make_guard
from ray_turns import RayTurns

from kairo_guard import SEAL_FIELD, Guard, IsolationViolation, KeyRing, with_canonical
from kairo_guard.integrations import ray as ray_adapter
from kairo_guard.integrations.ray import (
    RECHECK_RULE,
    RULE_COLUMN,
    BatchGuard,
    guard_dataset,
    snapshot,
)

SHARED = "shared-training"
PUBLIC = 300


@pytest.fixture(scope="module")
def cluster(ray_turns: RayTurns) -> Iterator[None]:
    with ray_turns.turn():  # under pytest-xdist, no other worker runs a cluster meanwhile
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield
        ray.shutdown()


def _rows(records: list[dict[str, Any]]) -> Any:
    return ray.data.from_items([with_canonical(r) for r in records], override_num_blocks=6)


class Corpus:
    def __init__(self, guard: Guard) -> None:
        self.secret = prose("ray-laundered", paragraphs=2)
        contents = [
            {"id": i, "text": f"Release note {i}: the worker restarts faster."}
            for i in range(PUBLIC)
        ]
        contents[137]["text"] = f"Release note 137. {self.secret[:700]}"
        seals = guard.vetting.vet(contents, source="docs")
        assert all(isinstance(s, str) for s in seals)
        self.public = [{**c, SEAL_FIELD: s} for c, s in zip(contents, seals, strict=True)]
        # the customer's document arrives after the shard was vetted: record 137 is
        # now a copy of customer content laundered as operator data
        self.customer = guard.label_record({"id": -1, "text": self.secret}, tenant="acme")
        guard.wait_indexed()


@pytest.fixture
def vetted(tmp_path: Path) -> Iterator[tuple[Guard, Corpus]]:
    with make_guard(tmp_path / "state", ring=KeyRing.generate(), pii_gate=False) as guard:
        yield guard, Corpus(guard)


def test_a_laundered_record_is_caught_in_filter_mode_and_the_rest_flows_on(
    cluster: None, vetted: tuple[Guard, Corpus]
) -> None:
    guard, corpus = vetted
    reports: list[Any] = []
    clean = guard_dataset(
        _rows(corpus.public), guard, sink=SHARED, mode="filter", batch_size=64,
        on_report=reports.append,
    )  # fmt: skip
    ids = sorted(r["id"] for r in clean.take_all())
    assert ids == [i for i in range(PUBLIC) if i != 137]
    (report,) = reports
    assert (report.total, report.allowed, report.blocked) == (PUBLIC, PUBLIC - 1, 1)
    assert report.by_rule["fingerprint.tenant-content"] == 1
    assert report.violations[0].digest is not None
    assert set(clean.schema().names) == {"id", "text", SEAL_FIELD, "_kairo_canonical"}
    guard.audit.flush()
    audited = [
        orjson.loads(line)
        for line in (guard.settings.home / "audit" / "audit.jsonl").read_bytes().splitlines()
        if b'"check.ray"' in line
    ]
    assert audited[-1]["blocked"] == 1
    assert audited[-1]["check_id"] == report.check_id
    as_actors = guard_dataset(_rows(corpus.public), guard, sink=SHARED, mode="filter", actors=True)
    assert sorted(r["id"] for r in as_actors.take_all()) == ids


def test_a_laundered_record_fails_the_job_in_enforce_mode(
    cluster: None, vetted: tuple[Guard, Corpus]
) -> None:
    guard, corpus = vetted
    with pytest.raises(IsolationViolation) as caught:
        guard_dataset(_rows(corpus.public), guard, sink=SHARED, mode="enforce", batch_size=64)
    assert caught.value.report.by_rule.get("fingerprint.tenant-content") == 1
    assert caught.value.report.blocked == 1


def test_customer_content_goes_to_its_tenant_only_and_workers_need_no_database(
    cluster: None, vetted: tuple[Guard, Corpus], tmp_path: Path
) -> None:
    guard, corpus = vetted
    acme = [
        guard.label_record({"id": i, "text": f"acme ticket {i}"}, tenant="acme") for i in range(40)
    ]
    mixed = [*acme, corpus.public[0], {"id": 999, "text": "an unsealed line"}]
    with pytest.raises(IsolationViolation) as caught:
        guard_dataset(_rows(mixed), guard, sink=SHARED, mode="enforce")
    assert caught.value.report.by_rule == {
        "class.customer-content-shared": 40, "allow.operator-public": 1, "seal.missing": 1,
    }  # fmt: skip
    guard.grant_agreement("acme", reference="ft-1")
    kept = guard_dataset(_rows(acme), guard, sink="tenant-fine-tune:acme", mode="enforce")
    assert kept.count() == 40

    # workers decide from the snapshot alone: with the guard closed and its state
    # directory moved away while they run, they decide exactly as before
    snap = snapshot(guard, SHARED)
    guard.close()
    home = guard.settings.home
    away = home.with_name("moved-away")
    home.rename(away)
    try:
        decided = _rows(mixed).map_batches(
            BatchGuard, fn_constructor_args=(ray.put(snap),), batch_format="pyarrow"
        )
        rules = Counter(decided.to_pandas()[RULE_COLUMN])
    finally:
        away.rename(home)
    assert rules == caught.value.report.by_rule


def test_a_shard_vetted_under_another_policy_is_refused_on_workers(
    cluster: None, tmp_path: Path
) -> None:
    ring = KeyRing.generate()
    with make_guard(tmp_path / "state", ring=ring, pii_gate=False) as guard:
        seals = guard.vetting.vet([{"text": "Public changelog entry."}], source="docs")
        record = {"text": "Public changelog entry.", SEAL_FIELD: seals[0]}
    # the same state under another vetting policy (the PII gate on): not current
    with (
        make_guard(tmp_path / "state", ring=ring, pii_gate=True) as other,
        pytest.raises(IsolationViolation) as caught,
    ):
        guard_dataset(_rows([record]), other, sink=SHARED, mode="enforce")
    assert caught.value.report.by_rule == {RECHECK_RULE: 1}


def test_an_agreement_revoked_while_the_job_ran_refuses_every_record(
    cluster: None, guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = [guard.label_record({"id": i, "text": f"acme {i}"}, tenant="acme") for i in range(5)]
    guard.grant_agreement("acme", reference="ft-1")
    sink = "tenant-fine-tune:acme"
    taken = {m: ray_adapter.snapshot(guard, sink, m) for m in ("enforce", "filter")}  # at start
    guard.revoke_agreement("acme")  # ... and while it runs
    monkeypatch.setattr(ray_adapter, "snapshot", lambda _guard, _sink, mode: taken[mode])
    with pytest.raises(IsolationViolation) as caught:
        guard_dataset(_rows(acme), guard, sink="tenant-fine-tune:acme", mode="enforce")
    assert caught.value.report.by_rule == {ray_adapter.REVOKED_RULE: 5}
    kept = guard_dataset(_rows(acme), guard, sink="tenant-fine-tune:acme", mode="filter")
    assert kept.count() == 0
