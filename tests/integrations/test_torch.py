"""The PyTorch adapter with real torch: map-style and iterable datasets checked record
by record as they load, before collation, in the main process and in DataLoader worker
processes (fork and spawn), which open their own guard from a spec and audit their own
checks."""

from __future__ import annotations

import json
import pickle
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from kg_testing import sealed_record
from torch.utils.data import DataLoader
from torch_tasks import RecordStream

from kairo_guard import ConfigError, Guard, IsolationViolation
from kairo_guard.audit.verify import verify_audit
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD
from kairo_guard.integrations.torch import (
    GuardedDataset,
    GuardedIterableDataset,
    WorkerViolation,
    guarded_loader,
)

Record = dict[str, Any]
FORK: dict[str, Any] = {"num_workers": 2, "multiprocessing_context": "fork"}
SPAWN: dict[str, Any] = {"num_workers": 2, "multiprocessing_context": "spawn"}
IN_PROCESS: dict[str, Any] = {"num_workers": 0}


@pytest.fixture
def acme(guard: Guard) -> list[Record]:
    """Six of acme's records, and an agreement that lets acme's fine-tune take them."""
    guard.grant_agreement("acme", reference="ag-1")
    return [guard.label_record({"text": f"acme doc {i}"}, tenant="acme") for i in range(6)]


def _texts(batches: Iterable[dict[str, list[str]]]) -> Iterator[str]:
    """The texts of collated batches (``default_collate`` made each field a list)."""
    for batch in batches:
        yield from batch["text"]


def _checks(guard: Guard) -> list[dict[str, Any]]:
    """The check summaries in the audit log (every process's), oldest first."""
    guard.audit.flush()
    lines = (Path(guard.settings.home) / "audit" / "audit.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry.get("event") == "check"]


def _load_until_refused(loader: DataLoader[Any]) -> tuple[list[str], IsolationViolation]:
    """The texts loaded before a refusal, and the refusal. The loader's workers are
    stopped before this returns: a worker's error re-raised by torch holds the iterator
    in a cycle through its traceback's frames, and when the garbage collector breaks
    it, torch waits 5 s for each worker."""
    loaded: list[str] = []
    batches = iter(loader)
    try:
        loaded.extend(_texts(batches))
    except IsolationViolation as exc:
        traceback.clear_frames(exc.__traceback__)
        refused = exc
    else:
        raise AssertionError("the loader refused nothing")
    del batches  # no frame holds it now: torch stops the workers here
    return loaded, refused


def _audit_verifies(guard: Guard) -> None:
    verified = verify_audit(
        Path(guard.settings.home) / "audit", guard.keys.subkeys(PURPOSE_AUDIT_HEAD)
    )
    assert verified.ok, verified.problem


@pytest.mark.parametrize("workers", [IN_PROCESS, FORK], ids=["in-process", "fork"])
def test_when_a_tenant_fine_tunes_on_its_own_records_then_all_load_in_order(
    guard: Guard, acme: list[Record], workers: dict[str, Any]
) -> None:
    spec = guard.spec()
    loader = guarded_loader(acme, spec, "tenant-fine-tune:acme", batch_size=2, **workers)
    assert list(_texts(loader)) == [f"acme doc {i}" for i in range(6)]
    if not workers["num_workers"]:
        Guard.from_spec(spec).close()  # the guard this process opened from the spec
    checks = _checks(guard)  # the workers have exited: what they audited is written
    assert [(c["total"], c["allowed"], c["mode"]) for c in checks] == [(2, 2, "enforce")] * 3
    _audit_verifies(guard)


REFUSED: dict[str, tuple[str, Callable[[Guard], Record], str]] = {
    "another tenant's record at acme's fine-tune": (
        "tenant-fine-tune:acme",
        lambda g: g.label_record({"text": "globex doc"}, tenant="globex"),
        "tenant.cross-tenant",
    ),
    "customer content at shared training": (
        "shared-training",
        lambda g: g.label_record({"text": "acme doc"}, tenant="acme"),
        "class.customer-content-shared",
    ),
    "an unsealed record at shared training": (
        "shared-training",
        lambda g: {"text": "no seal"},
        "seal.missing",
    ),
}


ENFORCED = [
    *[pytest.param(case, IN_PROCESS, id=f"{case}-in-process") for case in REFUSED],
    *[pytest.param(case, FORK, id=f"{case}-fork") for case in REFUSED],
    # a spawned worker imports torch afresh (seconds): one case
    pytest.param("an unsealed record at shared training", SPAWN, id="spawn"),
]


@pytest.mark.parametrize(("case", "workers"), ENFORCED)
def test_when_a_record_is_refused_in_enforce_mode_then_the_loader_raises_its_rule(
    guard: Guard, acme: list[Record], case: str, workers: dict[str, Any]
) -> None:
    sink, make, rule = REFUSED[case]
    fine = acme if sink.startswith("tenant") else [_operator_record(guard, i) for i in range(6)]
    records = [*fine[:5], make(guard)]
    loader = guarded_loader(records, guard, sink, batch_size=2, **workers)
    loaded, refused = _load_until_refused(loader)
    assert loaded == [r["text"] for r in fine[:4]]  # the batches before the refused one
    assert rule in str(refused)
    report = refused.report
    assert [(v.index, v.rule) for v in report.violations] == [(5, rule)]  # its dataset index
    assert (report.total, report.blocked) == (2, 1)
    in_worker = workers["num_workers"] > 0
    assert isinstance(refused, WorkerViolation) is in_worker
    assert ("DataLoader worker process" in str(refused)) is in_worker
    assert str(refused).startswith(f"sink {report.sink!r}")  # the refusal comes first
    checks = _checks(guard)  # one a batch, in the order workers wrote them; all exited
    assert sorted((c["total"], c["blocked"], c["by_rule"].get(rule, 0)) for c in checks) == [
        (2, 0, 0),
        (2, 0, 0),
        (2, 1, 1),
    ]
    _audit_verifies(guard)


def _operator_record(guard: Guard, i: int) -> Record:
    return sealed_record(guard, {"text": f"public doc {i}"}, data_class="operator_public")


MIXED_RULES = {"allow.tenant-own-content": 4, "seal.missing": 1, "tenant.cross-tenant": 1}


def _mixed(guard: Guard, acme: list[Record]) -> list[Record]:
    globex = guard.label_record({"text": "globex doc"}, tenant="globex")
    return [acme[0], {"text": "no seal"}, acme[1], globex, acme[2], acme[3]]


def test_when_a_stream_is_filtered_in_process_then_exactly_the_allowed_records_pass_in_order(
    guard: Guard, acme: list[Record]
) -> None:
    stream = RecordStream(_mixed(guard, acme))
    loader = guarded_loader(stream, guard, "tenant-fine-tune:acme", mode="filter", batch_size=2)
    assert list(_texts(loader)) == [f"acme doc {i}" for i in range(4)]
    [check] = _checks(guard)
    assert (check["total"], check["blocked"], check["by_rule"]) == (6, 2, MIXED_RULES)


@pytest.mark.parametrize(
    ("splits_itself", "shard"), [(True, False), (False, True)], ids=["dataset-splits", "shard"]
)
def test_when_workers_filter_a_stream_then_each_drops_what_it_refuses_and_audits_its_check(
    guard: Guard, acme: list[Record], splits_itself: bool, shard: bool
) -> None:
    stream = RecordStream(_mixed(guard, acme), splits_itself=splits_itself)
    loader = guarded_loader(
        stream, guard, "tenant-fine-tune:acme", mode="filter", shard=shard, batch_size=2, **FORK
    )
    assert sorted(_texts(loader)) == [f"acme doc {i}" for i in range(4)]  # each exactly once
    checks = _checks(guard)
    assert len(checks) == 2  # one check per worker: its epoch, its own guard
    assert sum(c["total"] for c in checks) == 6
    rules: dict[str, int] = {}
    for check in checks:
        for found, count in check["by_rule"].items():
            rules[found] = rules.get(found, 0) + count
    assert rules == MIXED_RULES
    _audit_verifies(guard)


def test_when_workers_are_stopped_mid_epoch_then_their_checks_are_still_audited(
    guard: Guard, acme: list[Record]
) -> None:
    stream = RecordStream(acme * 4, splits_itself=True)  # twelve records a worker
    loader = guarded_loader(stream, guard.spec(), "tenant-fine-tune:acme", batch_size=2, **FORK)
    batches = iter(loader)
    next(batches)
    next(batches)  # a batch from each worker: both have begun their check
    del batches  # the DataLoader stops its workers; each finishes its check on the way out
    checks = _checks(guard)
    assert len(checks) == 2
    assert all(2 <= c["total"] < 12 and c["blocked"] == 0 for c in checks)
    _audit_verifies(guard)


def test_when_a_loader_is_made_in_a_tenants_context_then_its_workers_check_in_it(
    guard: Guard, acme: list[Record]
) -> None:
    with guard.tenant_context("globex"):
        loader = guarded_loader(acme, guard, "tenant-fine-tune:acme", batch_size=2, **FORK)
    loaded, refused = _load_until_refused(loader)  # outside the context: workers carry it
    assert loaded == []
    assert isinstance(refused, WorkerViolation)
    assert refused.report.by_rule == {"tenant.cross-tenant": 2}


def test_when_observing_then_every_record_passes_and_refusals_are_audited(
    guard: Guard, acme: list[Record]
) -> None:
    records = _mixed(guard, acme)
    dataset = GuardedDataset(records, guard, "tenant-fine-tune:acme", mode="observe")
    assert [dataset[i] for i in range(len(dataset))] == records
    assert sum(c["blocked"] for c in _checks(guard)) == 2


def test_when_a_wrapper_is_pickled_then_it_carries_the_spec_not_the_guard(
    guard: Guard, acme: list[Record]
) -> None:
    dataset = GuardedDataset(acme, guard, "tenant-fine-tune:acme")
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy.checks.spec == guard.spec()
    assert copy[0] == acme[0]  # checked by a guard opened here from the spec
    opened = Guard.from_spec(guard.spec())
    assert opened is not guard
    opened.close()


BAD: dict[str, tuple[Callable[[Guard, list[Record]], object], str]] = {
    "filter on a map-style dataset": (
        lambda g, r: GuardedDataset(r, g, "shared-training", mode="filter"),
        "cannot drop an index",
    ),
    "an unknown mode": (
        lambda g, r: GuardedIterableDataset(r, g, "shared-training", mode="lax"),
        "mode must be one of enforce, filter, observe",
    ),
    "an unknown sink": (lambda g, r: GuardedDataset(r, g, "training"), "unknown sink"),
    "no guard": (
        lambda g, r: GuardedDataset(r, cast(Any, g.settings), "shared-training"),
        r"a Guard or guard\.spec\(\)",
    ),
    "shard for a map-style dataset": (
        lambda g, r: guarded_loader(r, g, "shared-training", shard=True),
        "a sampler splits",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_when_arguments_are_bad_then_construction_raises_config_error(
    guard: Guard, acme: list[Record], case: str
) -> None:
    make, message = BAD[case]
    with pytest.raises(ConfigError, match=message):
        make(guard, acme)


def test_when_a_loader_is_guarded_then_it_is_a_plain_dataloader_over_a_wrapper(
    guard: Guard, acme: list[Record]
) -> None:
    loader = guarded_loader(RecordStream(acme), guard, "tenant-fine-tune:acme", batch_size=3)
    assert type(loader) is DataLoader
    assert isinstance(loader.dataset, GuardedIterableDataset)
