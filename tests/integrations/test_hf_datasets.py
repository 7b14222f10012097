"""The Hugging Face ``datasets`` adapter, on real ``datasets`` (Arrow, memory-mapped
files on disk, ``multiprocess`` worker pools) and a real guard: a dataset is blocked,
filtered or allowed at a sink, in worker processes too; a filter is never served from
a cache after an agreement changes; a guarded map keeps its sources' labels where a
plain one loses them; ``save_to_disk`` and ``push_to_hub`` write nothing that is
refused."""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import pytest
from datasets import (
    Dataset,
    DatasetDict,
    Features,
    Value,
    disable_progress_bars,
    load_from_disk,
)
from kg_testing import sealed_record

from kairo_guard import (
    CANONICAL_FIELD,
    SEAL_FIELD,
    CheckReport,
    DataClass,
    Guard,
    IsolationViolation,
    Outcome,
    StoreError,
    verify_audit,
)
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD
from kairo_guard.integrations._datasets_workers import DecisionPass
from kairo_guard.integrations.datasets import (
    guard_dataset,
    guarded_map,
    push_to_hub,
    save_to_disk,
    sealed_dataset,
)
from kairo_guard.workers import GuardSpec

FINE_TUNE = "tenant-fine-tune:acme"
SHARED = "shared-training"


@pytest.fixture(autouse=True)
def _quiet() -> None:
    disable_progress_bars()


@pytest.fixture
def acme(guard: Guard) -> Guard:
    """The guard, with acme's fine-tune agreement active."""
    guard.grant_agreement("acme", reference="ag-1")
    return guard


def _acme_records(guard: Guard, count: int = 4) -> list[dict[str, Any]]:
    """Sealed acme records of shapes Arrow changes (a key some lack, an int beside nulls)."""
    records = []
    for i in range(count):
        body: dict[str, Any] = {"id": i, "text": f"acme ticket {i}: refund the March invoice"}
        if i % 2:
            body["priority"] = i
        records.append(guard.label_record(body, tenant="acme"))
    return records


def _ids(ds: Any) -> list[int]:
    return [row["id"] for row in ds]


# -- checks at a sink --------------------------------------------------------------------


def test_when_customer_content_meets_a_shared_sink_then_it_is_blocked_and_its_fine_tune_allows_it(
    acme: Guard,
) -> None:
    ds = sealed_dataset(_acme_records(acme))
    with pytest.raises(IsolationViolation) as raised:
        guard_dataset(ds, acme, SHARED)
    report = raised.value.report
    assert (report.total, report.blocked) == (4, 4)
    assert report.by_rule == {"class.customer-content-shared": 4}
    assert [v.index for v in report.violations] == [0, 1, 2, 3]
    assert all(v.tenant == acme.keys.pseudonym("acme") for v in report.violations)
    reports: list[CheckReport] = []
    assert guard_dataset(ds, acme, FINE_TUNE, on_report=reports.append) is ds
    assert reports[0].by_rule == {"allow.tenant-own-content": 4}


def test_when_a_sink_filters_then_only_the_rows_that_pass_remain_without_helper_columns(
    acme: Guard,
) -> None:
    records = _acme_records(acme, 3)
    records.insert(1, acme.label_record({"id": 10, "text": "globex roadmap"}, tenant="globex"))
    records.append({"id": 11, "text": "no seal at all"})
    records.append({**records[0], "text": "acme ticket 0: refund nothing"})  # edited after sealing
    ds = sealed_dataset(records)
    reports: list[CheckReport] = []
    kept = guard_dataset(ds, acme, FINE_TUNE, mode="filter", on_report=reports.append)
    assert isinstance(kept, Dataset)
    assert _ids(kept) == [0, 1, 2]
    assert kept.column_names == ds.column_names
    assert reports[0].by_rule == {
        "allow.tenant-own-content": 3,
        "tenant.cross-tenant": 1,
        "seal.missing": 1,
        "seal.digest-mismatch": 1,
    }
    assert [v.index for v in reports[0].violations] == [1, 4, 5]
    again = acme.check(list(kept), sink=FINE_TUNE, mode="filter")
    assert (again.allowed, again.blocked) == (3, 0)


def test_when_a_sink_observes_then_every_row_passes_and_the_refusals_are_reported(
    acme: Guard,
) -> None:
    ds = sealed_dataset(_acme_records(acme))
    reports: list[CheckReport] = []
    assert guard_dataset(ds, acme, SHARED, mode="observe", on_report=reports.append) is ds
    assert (reports[0].blocked, str(reports[0].mode)) == (4, "observe")


def test_when_a_dataset_is_empty_then_it_passes_with_an_empty_report(guard: Guard) -> None:
    ds = sealed_dataset([])
    reports: list[CheckReport] = []
    assert guard_dataset(ds, guard, SHARED, on_report=reports.append) is ds
    assert (reports[0].total, reports[0].by_rule) == (0, {})


# -- worker processes --------------------------------------------------------------------


@pytest.fixture
def opened_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A spy on ``Guard.from_spec`` (the real one still opens the guard): each call
    appends its process id to the returned file. Forked workers inherit it."""
    log = tmp_path / "opened-in"
    original = Guard.from_spec

    def spy(cls: type[Guard], spec: GuardSpec) -> Guard:
        with log.open("a") as out:
            out.write(f"{os.getpid()}\n")
        return original(spec)

    monkeypatch.setattr(Guard, "from_spec", classmethod(spy))
    return log


def _mixed(guard: Guard, count: int) -> list[dict[str, Any]]:
    """acme records with an unsealed one at index 1 and one of globex at count - 2."""
    records = _acme_records(guard, count)
    records[1] = {"id": 1, "text": "pasted from somewhere"}
    records[count - 2] = guard.label_record({"id": count - 2, "text": "globex"}, tenant="globex")
    return records


def _audit(guard: Guard) -> list[dict[str, Any]]:
    """The guard's audit entries, once its chain (written by every process) verifies."""
    guard.audit.flush()
    home = Path(guard.settings.home) / "audit"
    verified = verify_audit(home, guard.keys.subkeys(PURPOSE_AUDIT_HEAD))
    assert verified.ok, verified.problem
    lines = (home / "audit.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_when_rows_are_checked_in_worker_processes_then_their_refusals_block_and_add_up(
    acme: Guard, opened_in: Path
) -> None:
    ds = sealed_dataset(_mixed(acme, 8))
    with pytest.raises(IsolationViolation) as raised:
        guard_dataset(ds, acme, FINE_TUNE, num_proc=2, batch_size=2)
    report = raised.value.report
    assert (report.total, report.allowed, report.blocked) == (8, 6, 2)
    assert report.by_rule == {
        "allow.tenant-own-content": 6,
        "seal.missing": 1,
        "tenant.cross-tenant": 1,
    }
    assert [(v.index, v.rule) for v in report.violations] == [
        (1, "seal.missing"),
        (6, "tenant.cross-tenant"),  # in the second worker's half
    ]
    workers = set(opened_in.read_text().split())
    assert len(workers) == 2
    assert str(os.getpid()) not in workers
    entries = _audit(acme)  # each batch a check of its own, rows numbered by dataset row
    assert sum(e["event"] == "check" for e in entries) == 4
    rows = [row for e in entries if e["event"] == "decisions" for row in e["rows"]]
    assert sorted((row[0], row[1]) for row in rows) == [
        (i, "block" if i in (1, 6) else "allow") for i in range(8)
    ]
    kept = guard_dataset(ds, acme, FINE_TUNE, mode="filter", num_proc=2, batch_size=2)
    assert _ids(kept) == [0, 2, 3, 4, 5, 7]


def test_when_a_worker_cannot_open_its_guard_then_the_check_fails_and_nothing_passes(
    acme: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(cls: type[Guard], spec: GuardSpec) -> Guard:
        raise StoreError("the state store cannot be opened")

    monkeypatch.setattr(Guard, "from_spec", classmethod(unavailable))
    ds = sealed_dataset(_acme_records(acme))
    with pytest.raises(StoreError, match="cannot be opened"):
        guard_dataset(ds, acme, FINE_TUNE, mode="filter", num_proc=2)


def test_when_a_check_is_made_in_a_tenants_context_then_it_is_decided_in_it_wherever_it_runs(
    acme: Guard,
) -> None:
    ds = sealed_dataset(_acme_records(acme))
    reports: list[CheckReport] = []
    with acme.tenant_context("globex"):  # serving globex: acme's rows are not for acme's sink
        kept = guard_dataset(
            ds, acme, FINE_TUNE, mode="filter", num_proc=2, on_report=reports.append
        )
        stream = guard_dataset(ds.to_iterable_dataset(), acme, FINE_TUNE, mode="filter")
    assert len(kept) == 0
    assert reports[0].by_rule == {"tenant.cross-tenant": 4}
    assert list(stream) == []  # read after the context ended, still decided in it


def test_a_pass_pickles_with_the_guards_spec_and_never_the_guard(acme: Guard) -> None:
    with pytest.raises(TypeError, match=r"guard\.spec\(\)"):
        pickle.dumps(acme)
    check = DecisionPass(acme, acme.resolve_sink(SHARED))
    assert check.guard() is acme  # in the process that made it
    copy = pickle.loads(pickle.dumps(check))
    assert copy.spec == acme.spec()
    opened = copy.guard()  # anywhere else: the process's guard, from the spec
    assert opened is not acme
    assert opened is Guard.from_spec(acme.spec())
    opened.close()


# -- caching -----------------------------------------------------------------------------


def _plain_filter(batch: dict[str, list[Any]], spec: GuardSpec, sink: str) -> list[bool]:
    """A check written as a plain ``ds.filter`` function: ``datasets`` caches it."""
    guard = Guard.from_spec(spec)
    rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
    run = guard.checks.start(sink, mode="filter")
    decisions = run.decide_many(rows)
    run.finish()
    return [d.outcome is Outcome.ALLOW for d in decisions]


def test_when_an_agreement_is_revoked_then_a_filter_is_not_served_from_the_cache(
    acme: Guard, tmp_path: Path
) -> None:
    sealed_dataset(_acme_records(acme)).save_to_disk(tmp_path / "ds")
    ds = load_from_disk(str(tmp_path / "ds"))  # memory-mapped: map and filter cache here
    assert ds.cache_files
    args = {"spec": acme.spec(), "sink": FINE_TUNE}
    assert len(ds.filter(_plain_filter, batched=True, fn_kwargs=args)) == 4
    assert len(guard_dataset(ds, acme, FINE_TUNE, mode="filter")) == 4
    cached = set((tmp_path / "ds").glob("cache-*"))
    acme.revoke_agreement("acme")
    stale = ds.filter(_plain_filter, batched=True, fn_kwargs=args)
    assert len(stale) == 4  # the hazard: the same function and arguments, a cached result
    reports: list[CheckReport] = []
    assert len(guard_dataset(ds, acme, FINE_TUNE, mode="filter", on_report=reports.append)) == 0
    assert reports[0].by_rule == {"agreement.inactive": 4}
    assert set((tmp_path / "ds").glob("cache-*")) == cached  # the guard wrote none
    Guard.from_spec(acme.spec()).close()  # opened by the plain filter in this process


# -- streams -----------------------------------------------------------------------------


def test_when_a_stream_holds_a_refused_record_then_enforce_raises_there_and_filter_drops_it(
    acme: Guard,
) -> None:
    records = _acme_records(acme, 8)
    records[5] = {"id": 5, "text": "no seal"}
    stream = sealed_dataset(records).to_iterable_dataset()
    read: list[int] = []
    with pytest.raises(IsolationViolation) as raised:
        read.extend(row["id"] for row in guard_dataset(stream, acme, FINE_TUNE, batch_size=2))
    assert read == [0, 1, 2, 3]  # nothing of the batch that holds the refusal
    assert [(v.index, v.rule) for v in raised.value.report.violations] == [(5, "seal.missing")]
    assert _ids(guard_dataset(stream, acme, FINE_TUNE, mode="filter", batch_size=2)) == [
        0, 1, 2, 3, 4, 6, 7,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="DataLoader"):
        guard_dataset(stream, acme, FINE_TUNE, num_proc=2)
    with pytest.raises(TypeError, match="IterableDataset"):  # read to check, read again to push
        push_to_hub(stream, "acme/fine-tune", acme, sink=FINE_TUNE)


def test_when_a_stream_is_read_by_dataloader_workers_then_each_worker_checks_its_rows(
    acme: Guard, opened_in: Path
) -> None:
    from torch.utils.data import DataLoader  # the loader training code reads streams with

    records = _acme_records(acme, 6)
    records[4] = {"id": 4, "text": "no seal"}
    stream = sealed_dataset(records).to_iterable_dataset(num_shards=2)
    checked = guard_dataset(stream, acme, FINE_TUNE, mode="filter", batch_size=2)
    rows = DataLoader(checked, batch_size=None, num_workers=2)
    assert sorted(row["id"] for row in rows) == [0, 1, 2, 3, 5]
    assert str(os.getpid()) not in set(opened_in.read_text().split())
    enforced = guard_dataset(stream, acme, FINE_TUNE, batch_size=2)
    # torch re-raises a worker's error from its text: the refusal arrives as RuntimeError
    with pytest.raises(RuntimeError, match="IsolationViolation"):
        list(DataLoader(enforced, batch_size=None, num_workers=2))


# -- maps --------------------------------------------------------------------------------


def _tokenize(row: dict[str, Any]) -> dict[str, Any]:
    return {"input_ids": [len(word) for word in row["text"].split()], "pid": os.getpid()}


def _tokenize_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    made = [_tokenize({"text": text}) for text in batch["text"]]
    return {"input_ids": [m["input_ids"] for m in made], "pid": [m["pid"] for m in made]}


@pytest.mark.parametrize(
    ("function", "batched", "num_proc"),
    [(_tokenize, False, None), (_tokenize_batch, True, None), (_tokenize_batch, True, 2)],
    ids=["rows", "batched", "batched-2-workers"],
)
def test_when_a_guarded_map_tokenizes_then_outputs_keep_their_sources_label(
    acme: Guard, function: Any, batched: bool, num_proc: int | None
) -> None:
    records = _acme_records(acme)
    ds = sealed_dataset(records)
    tokens = guarded_map(
        ds, function, acme, batched=batched, num_proc=num_proc, remove_columns="text"
    )
    assert "text" not in tokens.column_names
    assert len(tokens) == 4
    origins = [acme.open_seal(source[SEAL_FIELD]) for source in records]
    for i, row in enumerate(tokens):
        label = acme.open_seal(row[SEAL_FIELD])
        assert (label.tenant, label.data_class) == ("acme", DataClass.CUSTOMER_CONTENT)
        # a row's output keeps its source's label; a batch's outputs (one batch per
        # worker here) the label of its rows that expires first, then the oldest (the
        # rows may be sealed a second apart)
        batch = [o for o, r in zip(origins, tokens, strict=True) if r["pid"] == row["pid"]]
        expected = (
            min(batch, key=lambda o: (o.expires_at is None, o.expires_at or 0, o.created_at))
            if batched
            else origins[i]
        )
        assert (label.created_at, label.expires_at, label.source) == (
            expected.created_at, expected.expires_at, expected.source,
        )  # fmt: skip
    pids = set(tokens["pid"])
    assert (os.getpid() not in pids) if num_proc else (pids == {os.getpid()})
    own = acme.check(list(tokens), sink=FINE_TUNE, mode="filter")
    assert (own.allowed, own.blocked) == (4, 0)
    shared = acme.check(list(tokens), sink=SHARED, mode="filter")
    assert shared.by_rule == {"class.customer-content-shared": 4}  # not seal.missing


def test_when_a_first_batch_holds_only_nulls_then_the_map_keeps_or_takes_the_columns_types(
    acme: Guard,
) -> None:
    records = [acme.label_record({"id": i, "text": f"acme {i}"}, tenant="acme") for i in range(2)]
    records += _acme_records(acme)[1:]  # "priority" first appears in the second batch
    ds = sealed_dataset(records)

    def late(row: dict[str, Any]) -> dict[str, Any]:
        return {"score": row["priority"]}  # a new column, null in the first batch

    kept = guarded_map(ds, lambda row: {"chars": len(row["text"])}, acme, batch_size=2)
    assert kept.features["priority"] == Value("int64")  # the input's type, as map keeps it
    with pytest.raises(TypeError, match="score"):
        guarded_map(ds, late, acme, batch_size=2)
    typed = Features({**ds.features, "score": Value("int32")})
    out = guarded_map(ds, late, acme, batch_size=2, features=typed)
    assert (out.features["priority"], out.features["score"]) == (Value("int64"), Value("int32"))
    own = acme.check(list(out), sink=FINE_TUNE, mode="filter")
    assert (own.allowed, own.blocked) == (5, 0)


def test_when_a_plain_map_changes_rows_then_they_no_longer_verify_and_are_blocked(
    acme: Guard,
) -> None:
    tokens = sealed_dataset(_acme_records(acme)).map(_tokenize)
    own = acme.check(list(tokens), sink=FINE_TUNE, mode="filter")
    assert own.by_rule == {"seal.digest-mismatch": 4}
    with pytest.raises(IsolationViolation):
        guard_dataset(tokens, acme, SHARED)


def test_when_a_source_has_no_restricting_label_that_verifies_then_its_output_has_no_seal(
    acme: Guard,
) -> None:
    acme_seal = acme.label_record({"text": "acme plan"}, tenant="acme")[SEAL_FIELD]
    ds = sealed_dataset(
        [
            {"text": "no seal"},
            sealed_record(acme, {"text": "public note"}, data_class="operator_public"),
            {"text": "globex plan", SEAL_FIELD: acme_seal},  # acme's seal moved onto it
            {"text": "a seal that is not one", SEAL_FIELD: "kg1.forged"},
        ]
    )
    out = guarded_map(ds, lambda row: {"chars": len(row["text"])}, acme)
    assert list(out[SEAL_FIELD]) == [None] * 4
    assert list(out[CANONICAL_FIELD]) == [None] * 4
    assert acme.check(list(out), sink=FINE_TUNE, mode="filter").by_rule == {"seal.missing": 4}
    assert acme.check(list(out), sink=SHARED, mode="filter").by_rule == {"seal.missing": 4}


def test_when_a_sources_label_no_longer_holds_then_its_output_is_not_sealed_again(
    acme: Guard,
) -> None:
    acme.set_retention("acme", "customer_content", 60)
    body = {"text": "acme ticket from last year"}
    expired = {**body, SEAL_FIELD: acme.seal(body, tenant="acme", created_at=time.time() - 3600)}
    erased = acme.label_record({"text": "globex ticket"}, tenant="globex")
    acme.erase_tenant("globex")
    out = guarded_map(sealed_dataset([expired, erased]), lambda row: {"n": 1}, acme)
    assert list(out[SEAL_FIELD]) == [None, None]  # neither retention nor erasure is reset


def _pack(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Packs a batch into one row whatever it holds (an N:1 map)."""
    return {"text": [" | ".join(batch["text"])]}


def test_when_a_batched_map_packs_rows_then_no_output_mixes_tenants(acme: Guard) -> None:
    tenants = ["acme", "acme", "globex", "acme", "globex", "globex"]
    records = [
        acme.label_record({"text": f"{t} note {i}"}, tenant=t) for i, t in enumerate(tenants)
    ]
    packed = guarded_map(
        sealed_dataset(records), _pack, acme, batched=True, remove_columns=["text"]
    )
    rows = [(row["text"], acme.open_seal(row[SEAL_FIELD]).tenant) for row in packed]
    assert rows == [
        ("acme note 0 | acme note 1", "acme"),
        ("globex note 2", "globex"),
        ("acme note 3", "acme"),
        ("globex note 4 | globex note 5", "globex"),
    ]
    own = acme.check(list(packed), sink=FINE_TUNE, mode="filter")
    assert own.by_rule == {"allow.tenant-own-content": 2, "tenant.cross-tenant": 2}


def test_when_a_stream_is_mapped_then_its_outputs_keep_their_labels_as_they_are_read(
    acme: Guard,
) -> None:
    stream = sealed_dataset(_acme_records(acme)).to_iterable_dataset()
    tokens = list(guarded_map(stream, _tokenize, acme, remove_columns=["text"]))
    assert sorted(tokens[0]) == sorted(
        ["id", "priority", "input_ids", "pid", SEAL_FIELD, CANONICAL_FIELD]
    )
    own = acme.check(tokens, sink=FINE_TUNE, mode="filter")
    assert (own.allowed, own.blocked) == (4, 0)


# -- writing to a destination ------------------------------------------------------------


def test_when_save_to_disk_meets_a_refused_record_then_nothing_is_written(
    acme: Guard, tmp_path: Path
) -> None:
    target = tmp_path / "shared-corpus"
    with pytest.raises(IsolationViolation) as raised:
        save_to_disk(sealed_dataset(_acme_records(acme)), target, acme, sink=SHARED)
    assert raised.value.report.by_rule == {"class.customer-content-shared": 4}
    assert not target.exists()
    splits = DatasetDict(
        train=sealed_dataset(_acme_records(acme)),
        test=sealed_dataset([{"id": 9, "text": "no seal"}]),
    )
    with pytest.raises(IsolationViolation):
        save_to_disk(splits, target, acme, sink=FINE_TUNE)
    assert not target.exists()  # not even the split that passes


def test_when_save_to_disk_is_allowed_then_the_written_dataset_loads_and_verifies(
    acme: Guard, tmp_path: Path
) -> None:
    target = tmp_path / "acme-fine-tune"
    reports: list[CheckReport] = []
    ds = sealed_dataset(_acme_records(acme))
    save_to_disk(ds, target, acme, sink=FINE_TUNE, on_report=reports.append)
    assert reports[0].allowed == 4
    loaded = load_from_disk(str(target))
    assert _ids(loaded) == [0, 1, 2, 3]
    assert guard_dataset(loaded, acme, FINE_TUNE) is loaded


HubCalls = list[tuple[int, str, dict[str, Any]]]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> HubCalls:
    """A double of ``Dataset.push_to_hub`` (the Hub cannot be reached here): records
    each call (rows, repo id, options) and returns a fake commit."""
    calls: HubCalls = []

    def push(ds: Dataset, repo_id: str, **options: Any) -> str:
        calls.append((len(ds), repo_id, options))
        return f"commit to {repo_id}"

    monkeypatch.setattr(Dataset, "push_to_hub", push)
    return calls


def test_when_push_to_hub_meets_a_refused_record_then_it_raises_before_any_network_call(
    acme: Guard,
) -> None:
    """The real ``push_to_hub``: refused first, so the Hub (unreachable here) is never
    called; had it been, the error would be a network error, not this one."""
    ds = sealed_dataset(_acme_records(acme))
    with pytest.raises(IsolationViolation) as raised:
        push_to_hub(ds, "kairo-guard-tests/shared-corpus", acme, sink=SHARED, private=True)
    assert raised.value.report.by_rule == {"class.customer-content-shared": 4}


def test_when_push_to_hub_is_allowed_then_the_push_follows_the_check(
    acme: Guard, hub: HubCalls
) -> None:
    """With the ``hub`` double in place of the Hub: a refused push never calls it, an
    allowed one calls it once, with the caller's options."""
    ds = sealed_dataset(_acme_records(acme))
    with pytest.raises(IsolationViolation):
        push_to_hub(ds, "acme/shared", acme, sink=SHARED)
    assert hub == []
    commit = push_to_hub(ds, "acme/fine-tune", acme, sink=FINE_TUNE, private=True)
    assert commit == "commit to acme/fine-tune"
    assert hub == [(4, "acme/fine-tune", {"num_proc": None, "private": True})]
