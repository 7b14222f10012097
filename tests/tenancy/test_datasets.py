"""Tenant datasets: the builder, signed manifests, fine-tune sinks, pruning and deletion."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kg_testing import make_guard, sealed_record

from kairo_guard import DataClass, Guard, IsolationViolation, KeyRing
from kairo_guard.core.content import content_digest
from kairo_guard.store.base import Agreement
from kairo_guard.tenancy.datasets import VerifiedDataset
from kairo_guard.tenancy.manifest import (
    MANIFEST_FILE,
    RECORDS_FILE,
    DatasetError,
    Manifest,
    merkle_root,
    parse_manifest,
)

DAY = 86_400
START = 1_800_000_000.0


class Clock:
    """The guard's injectable clock, moved by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guard(tmp_path: Path, ring: KeyRing, clock: Clock) -> Iterator[Guard]:
    with make_guard(tmp_path / "state", ring=ring, pii_gate=False, clock=clock) as g:
        yield g


def docs(guard: Guard, tenant: str, n: int = 4) -> list[dict[str, Any]]:
    return [
        guard.label_record({"text": f"{tenant} doc {i}", "i": i}, tenant=tenant) for i in range(n)
    ]


def build(guard: Guard, out: Path, tenant: str = "acme", n: int = 4) -> Manifest:
    builder = guard.tenant_dataset(tenant)
    builder.add_all(docs(guard, tenant, n))
    return builder.write(out)


def fine_tune(guard: Guard, tenant: str = "acme", mode: str = "enforce") -> Any:
    received: list[Any] = []

    @guard.sink(f"{tenant}-ft", kind="tenant-fine-tune", tenant=tenant, mode=mode)
    def train(dataset: Any) -> int:
        received.append(dataset)
        return sum(1 for _ in dataset)

    train.received = received  # type: ignore[attr-defined]
    return train


def read_manifest(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((path / MANIFEST_FILE).read_bytes())
    return doc


def write_manifest(path: Path, doc: dict[str, Any]) -> None:
    (path / MANIFEST_FILE).write_bytes(orjson.dumps(doc))


def lines(path: Path) -> list[bytes]:
    return (path / RECORDS_FILE).read_bytes().splitlines(keepends=True)


# -- the builder ----------------------------------------------------------------------


def test_when_a_tenant_builds_its_dataset_then_records_and_a_signed_manifest_are_written(
    guard: Guard, tmp_path: Path
) -> None:
    agreement = guard.grant_agreement("acme")
    records = docs(guard, "acme", 5)
    builder = guard.tenant_dataset("acme")
    builder.add_all(records)
    manifest = builder.write(tmp_path / "ds")

    assert manifest.tenant == "acme"
    assert manifest.record_count == 5
    assert manifest.agreement_id == agreement.id
    assert manifest.created_at == int(START)
    assert manifest.merkle_root == merkle_root(content_digest(r) for r in records)
    assert parse_manifest((tmp_path / "ds" / MANIFEST_FILE).read_bytes()) == manifest
    written = [orjson.loads(line) for line in lines(tmp_path / "ds")]
    assert written == records
    [info] = guard.datasets("acme")
    assert (info.id, info.record_count, info.manifest_digest) == (
        manifest.dataset_id,
        5,
        manifest.digest,
    )
    assert info.path == (tmp_path / "ds").resolve()
    assert guard.datasets("globex") == []


def test_when_records_of_two_tenants_are_mixed_then_the_build_is_refused_and_nothing_written(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    guard.grant_agreement("globex")
    builder = guard.tenant_dataset("acme")
    builder.add_all([*docs(guard, "acme", 2), *docs(guard, "globex", 1)])

    with pytest.raises(IsolationViolation) as caught:
        builder.write(tmp_path / "ds")

    [violation] = caught.value.report.violations
    assert (violation.index, violation.rule) == (2, "tenant.cross-tenant")
    assert not (tmp_path / "ds").exists()
    assert guard.datasets() == []


def _refused_record(guard: Guard, case: str) -> object:
    body = {"text": "acme doc"}
    if case == "unlabeled":
        return body
    if case == "edited":
        return {**guard.label_record(body, tenant="acme"), "text": "acme doc, edited"}
    if case == "forged":
        return {**body, "_kairo": "kg1.k1.nope.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
    if case == "expired":
        return sealed_record(
            guard,
            body,
            data_class=DataClass.CUSTOMER_CONTENT,
            tenant="acme",
            created_at=int(START) - 2 * DAY,
            expires_at=int(START) - DAY,
        )
    if case == "usage-telemetry":
        return guard.label_record(body, tenant="acme", data_class="usage_telemetry")
    if case == "anonymized-telemetry":
        return sealed_record(guard, body, data_class=DataClass.ANONYMIZED_TELEMETRY)
    return ["not", "an", "object"]


@pytest.mark.parametrize(
    ("case", "rule"),
    [
        ("unlabeled", "seal.missing"),
        ("edited", "seal.digest-mismatch"),
        ("forged", "seal.invalid"),
        ("expired", "retention.expired"),
        ("usage-telemetry", "class.usage-telemetry"),
        ("anonymized-telemetry", "class.anonymized-telemetry-tenant-sink"),
        ("list", "dataset.not-an-object"),
    ],
)
def test_when_a_record_is_not_the_tenants_verified_content_then_it_is_refused_with_its_rule(
    guard: Guard, tmp_path: Path, case: str, rule: str
) -> None:
    guard.grant_agreement("acme")
    builder = guard.tenant_dataset("acme")
    builder.add_all(docs(guard, "acme", 1))

    decision = builder.add(_refused_record(guard, case))

    assert decision.rule == rule
    with pytest.raises(IsolationViolation, match=rule):
        builder.write(tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_when_operator_data_is_added_then_the_policy_lets_it_into_the_dataset(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    builder = guard.tenant_dataset("acme")
    builder.add_all(docs(guard, "acme", 1))
    public = sealed_record(guard, {"text": "public glossary"}, data_class="operator_public")

    assert builder.add(public).rule == "allow.operator-public"
    assert builder.write(tmp_path / "ds").record_count == 2


def test_when_the_tenant_has_no_active_agreement_then_no_dataset_is_built(
    guard: Guard, tmp_path: Path
) -> None:
    builder = guard.tenant_dataset("acme")
    builder.add_all(docs(guard, "acme", 1))
    with pytest.raises(IsolationViolation, match=r"agreement\.inactive"):
        builder.write(tmp_path / "ds")

    # operator data alone passes record by record, but a fine-tune still needs one
    only_public = guard.tenant_dataset("acme")
    only_public.add(sealed_record(guard, {"text": "public"}, data_class="operator_public"))
    with pytest.raises(DatasetError, match=r"agreement\.inactive"):
        only_public.write(tmp_path / "ds2")


def test_when_an_agreement_scope_does_not_cover_fine_tuning_then_it_permits_none() -> None:
    base = Agreement("agr_1", "acme", "fine-tune", START, None, None, "")
    assert base.permits_fine_tune(START)
    assert Agreement("a", "acme", "eval, fine-tune", START, None, None, "").permits_fine_tune(START)
    assert not dataclasses.replace(base, scope="eval").permits_fine_tune(START)
    assert not dataclasses.replace(base, revoked_at=START).permits_fine_tune(START + 1)
    assert not dataclasses.replace(base, expires_at=START + 10).permits_fine_tune(START + 10)


def test_when_the_output_directory_is_not_empty_then_the_build_refuses_to_write(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "other.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"dataset\.exists"):
        build(guard, tmp_path / "ds")


# -- manifests and records ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant", "globex"),
        ("record_count", 3),
        ("merkle_root", "0" * 64),
        ("agreement_id", "agr_other"),
        ("created_at", int(START) + 1),
        ("policy_version", "kg-policy-0"),
        ("policy_fingerprint", "0" * 64),
        ("dataset_id", "ds_other"),
        ("supersedes", "0" * 64),
        ("key_id", "k0"),
    ],
)
def test_when_any_manifest_field_is_edited_then_the_dataset_does_not_open(
    guard: Guard, tmp_path: Path, field: str, value: object
) -> None:
    guard.grant_agreement("acme")
    build(guard, tmp_path / "ds")
    doc = read_manifest(tmp_path / "ds")
    write_manifest(tmp_path / "ds", {**doc, field: value})

    with pytest.raises(DatasetError, match=r"dataset\.manifest-invalid"):
        guard.open_dataset(tmp_path / "ds")


def test_when_a_manifest_is_signed_by_another_key_then_it_does_not_verify(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    build(guard, tmp_path / "ds")
    # The same key id with another secret: a manifest made by another deployment.
    with make_guard(tmp_path / "other", ring=KeyRing.generate(), pii_gate=False) as other:
        other.grant_agreement("acme")
        build(other, tmp_path / "foreign")

    with pytest.raises(DatasetError, match="signature does not verify"):
        guard.open_dataset(tmp_path / "foreign")


def test_when_the_signing_key_rotates_then_manifests_signed_by_a_held_old_key_verify(
    tmp_path: Path, ring: KeyRing
) -> None:
    with make_guard(tmp_path / "state", ring=ring, pii_gate=False) as g:
        g.grant_agreement("acme")
        build(g, tmp_path / "ds")
    new = KeyRing.generate("k2")
    rotated = KeyRing(keys={**new.keys, **ring.keys}, signing_key_id="k2", pseudonym_key_id="k1")
    with make_guard(tmp_path / "state", ring=rotated, pii_gate=False) as g:
        assert g.open_dataset(tmp_path / "ds").manifest.key_id == "k1"
        assert fine_tune(g)(g.open_dataset(tmp_path / "ds")) == 4
    dropped = KeyRing(keys=new.keys, signing_key_id="k2")
    with (
        make_guard(tmp_path / "state", ring=dropped, pii_gate=False) as g,
        pytest.raises(DatasetError, match="unknown key id"),
    ):
        g.open_dataset(tmp_path / "ds")


def test_when_a_manifest_is_moved_to_another_tenants_dataset_then_it_does_not_verify(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    guard.grant_agreement("globex")
    build(guard, tmp_path / "acme")
    build(guard, tmp_path / "globex", "globex")
    (tmp_path / "globex" / MANIFEST_FILE).write_bytes(
        (tmp_path / "acme" / MANIFEST_FILE).read_bytes()
    )

    with pytest.raises(DatasetError, match=r"dataset\.records-mismatch"):
        guard.open_dataset(tmp_path / "globex")


def test_when_another_tenants_records_have_the_same_content_then_the_sink_still_refuses_them(
    guard: Guard, tmp_path: Path
) -> None:
    # The Merkle root binds content digests, which two tenants' identical texts share:
    # the records' own seals still name their tenant, and every record is checked.
    guard.grant_agreement("acme")
    guard.grant_agreement("globex")
    same = [{"text": "quarterly template", "i": i} for i in range(3)]
    for tenant in ("acme", "globex"):
        builder = guard.tenant_dataset(tenant)
        builder.add_all(guard.label_record(r, tenant=tenant) for r in same)
        builder.write(tmp_path / tenant)
    (tmp_path / "globex" / MANIFEST_FILE).write_bytes(
        (tmp_path / "acme" / MANIFEST_FILE).read_bytes()
    )
    train = fine_tune(guard)

    with pytest.raises(IsolationViolation, match=r"tenant\.cross-tenant"):
        train(guard.open_dataset(tmp_path / "globex"))
    assert train.received == []


def _tamper(guard: Guard, path: Path, how: str) -> None:
    rows = lines(path)
    if how == "added":
        rows.append(orjson.dumps(guard.label_record({"text": "acme extra"}, tenant="acme")) + b"\n")
    elif how == "removed":
        rows.pop(1)
    elif how == "changed":
        rows[1] = rows[1].replace(b"acme doc 1", b"acme doc X")
    elif how == "resealed":  # changed, with a fresh valid seal for the new content
        rows[1] = orjson.dumps(guard.label_record({"text": "acme doc X", "i": 1}, tenant="acme"))
        rows[1] += b"\n"
    elif how == "reordered":
        rows[0], rows[1] = rows[1], rows[0]
    elif how == "blank-line":
        rows.insert(1, b"\n")
    (path / RECORDS_FILE).write_bytes(b"".join(rows))


TAMPERING = ["added", "removed", "changed", "resealed", "reordered", "blank-line"]


@pytest.mark.parametrize("how", TAMPERING)
def test_when_a_record_is_added_removed_changed_or_moved_then_the_dataset_does_not_open(
    guard: Guard, tmp_path: Path, how: str
) -> None:
    guard.grant_agreement("acme")
    build(guard, tmp_path / "ds")
    _tamper(guard, tmp_path / "ds", how)

    with pytest.raises(DatasetError, match=r"dataset\.records-mismatch"):
        guard.open_dataset(tmp_path / "ds")


@pytest.mark.parametrize("how", TAMPERING)
def test_when_records_change_after_opening_then_the_sink_refuses_before_training_runs(
    guard: Guard, tmp_path: Path, how: str
) -> None:
    guard.grant_agreement("acme")
    build(guard, tmp_path / "ds")
    dataset = guard.open_dataset(tmp_path / "ds")
    _tamper(guard, tmp_path / "ds", how)
    train = fine_tune(guard)

    with pytest.raises(IsolationViolation, match=r"dataset\.records-mismatch"):
        train(dataset)
    assert train.received == []


def test_when_a_file_changes_while_it_is_read_then_no_changed_record_is_yielded(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    build(guard, tmp_path / "ds")
    dataset = guard.open_dataset(tmp_path / "ds")
    _tamper(guard, tmp_path / "ds", "changed")

    seen: list[dict[str, Any]] = []
    with pytest.raises(DatasetError, match="record 1 is not the record"):
        seen.extend(dataset)
    assert [r["i"] for r in seen] == [0]


def test_when_a_file_is_truncated_then_iteration_fails_at_the_end(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    build(guard, tmp_path / "ds")
    dataset = guard.open_dataset(tmp_path / "ds")
    _tamper(guard, tmp_path / "ds", "removed")
    (tmp_path / "ds" / RECORDS_FILE).write_bytes(b"".join(lines(tmp_path / "ds")[:1]))

    with pytest.raises(DatasetError, match="missing"):
        list(dataset)


def test_when_the_manifest_is_missing_or_not_json_then_opening_fails_clearly(
    guard: Guard, tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match=r"dataset\.unreadable"):
        guard.open_dataset(tmp_path / "nowhere")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / MANIFEST_FILE).write_bytes(b"{not json")
    with pytest.raises(DatasetError, match=r"dataset\.manifest-invalid"):
        guard.open_dataset(tmp_path / "ds")
    write_manifest(tmp_path / "ds", {"format": "kg-dataset-1", "record_count": True})
    with pytest.raises(DatasetError, match=r"dataset\.manifest-invalid"):
        guard.open_dataset(tmp_path / "ds")


# -- fine-tune sinks ------------------------------------------------------------------


def test_when_a_verified_dataset_reaches_its_tenants_sink_then_training_gets_it_whole(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    manifest = build(guard, tmp_path / "ds")
    train = fine_tune(guard)

    assert train(guard.open_dataset(tmp_path / "ds")) == 4
    [given] = train.received
    assert isinstance(given, VerifiedDataset)
    assert given.manifest == manifest
    assert [r["i"] for r in given] == [0, 1, 2, 3]


def test_when_a_dataset_is_presented_to_another_tenants_sink_then_it_is_refused(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    guard.grant_agreement("globex")
    build(guard, tmp_path / "ds")
    train = fine_tune(guard, "globex")

    with pytest.raises(IsolationViolation, match=r"dataset\.tenant-mismatch"):
        train(guard.open_dataset(tmp_path / "ds"))
    assert train.received == []


def test_when_a_dataset_is_presented_to_a_shared_sink_then_it_is_refused(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    build(guard, tmp_path / "ds")
    report = guard.check(
        guard.open_dataset(tmp_path / "ds"),
        sink=guard.resolve_sink("router", kind="shared-training"),
    )
    assert report.by_rule == {"dataset.shared-sink": 1}


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_when_the_agreement_lapses_then_a_fine_tune_allowed_yesterday_is_blocked(
    guard: Guard, tmp_path: Path, clock: Clock, how: str
) -> None:
    guard.grant_agreement("acme", expires_at=START + 2 * DAY)
    build(guard, tmp_path / "ds")
    train = fine_tune(guard)
    assert train(guard.open_dataset(tmp_path / "ds")) == 4  # allowed yesterday

    clock.now += DAY if how == "revoked" else 2 * DAY
    if how == "revoked":
        assert guard.revoke_agreement("acme") == 1
    with pytest.raises(IsolationViolation, match=r"dataset\.agreement-inactive"):
        train(guard.open_dataset(tmp_path / "ds"))
    assert len(train.received) == 1


def test_when_a_new_agreement_replaces_the_manifests_revoked_one_then_the_dataset_stays_blocked(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    build(guard, tmp_path / "ds")
    guard.revoke_agreement("acme")
    guard.grant_agreement("acme")  # another agreement: the dataset was not built under it

    report = guard.check(
        guard.open_dataset(tmp_path / "ds"),
        sink=guard.resolve_sink("ft", kind="tenant-fine-tune:acme"),
    )
    assert report.by_rule == {"dataset.agreement-inactive": 1}


def test_when_a_record_expires_after_the_build_then_enforce_refuses_and_filter_leaves_it_out(
    guard: Guard, tmp_path: Path, clock: Clock
) -> None:
    guard.grant_agreement("acme")
    short = sealed_record(
        guard,
        {"text": "acme short-lived"},
        data_class="customer_content",
        tenant="acme",
        created_at=int(START),
        expires_at=int(START) + DAY,
    )
    builder = guard.tenant_dataset("acme")
    builder.add_all([*docs(guard, "acme", 2), short])
    builder.write(tmp_path / "ds")
    clock.now += 2 * DAY

    with pytest.raises(IsolationViolation, match=r"retention\.expired"):
        fine_tune(guard)(guard.open_dataset(tmp_path / "ds"))
    filtered = fine_tune(guard, mode="filter")
    assert filtered(guard.open_dataset(tmp_path / "ds")) == 2
    assert len(filtered.received[0]) == 2


def test_when_a_dataset_is_checked_in_observe_mode_then_it_passes_and_the_refusal_is_reported(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    build(guard, tmp_path / "ds")
    guard.revoke_agreement("acme")
    reports: list[Any] = []

    @guard.sink(
        "ft", kind="tenant-fine-tune", tenant="acme", mode="observe", on_report=reports.append
    )
    def train(dataset: Any) -> int:
        return sum(1 for _ in dataset)

    assert train(guard.open_dataset(tmp_path / "ds")) == 4
    assert reports[0].by_rule == {"dataset.agreement-inactive": 1}


def test_when_records_are_given_without_a_manifest_then_each_record_is_checked_as_before(
    guard: Guard,
) -> None:
    guard.grant_agreement("acme")
    train = fine_tune(guard)
    assert train(docs(guard, "acme", 3)) == 3
    with pytest.raises(IsolationViolation, match=r"tenant\.cross-tenant"):
        train(docs(guard, "globex", 1))


# -- pruning and deletion -------------------------------------------------------------


def test_when_a_dataset_is_pruned_then_a_new_manifest_supersedes_the_old_one(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    old = build(guard, tmp_path / "ds", n=5)
    stale = guard.open_dataset(tmp_path / "ds")
    even = {content_digest({"text": f"acme doc {i}", "i": i}) for i in (0, 2, 4)}

    kept, removed = guard.tenancy.datasets.prune(
        old.dataset_id, lambda label: label.digest in even, reason="retention"
    )

    assert (kept, removed) == (3, 2)
    fresh = guard.open_dataset(tmp_path / "ds")
    assert fresh.manifest.supersedes == old.digest
    assert fresh.manifest.dataset_id == old.dataset_id
    assert [r["i"] for r in fresh] == [0, 2, 4]
    [info] = guard.datasets("acme")
    assert (info.record_count, info.manifest_digest) == (3, fresh.manifest.digest)
    assert fine_tune(guard)(fresh) == 3
    # the dataset opened before the prune no longer matches its files or the store
    report = guard.check(stale, sink=guard.resolve_sink("ft", kind="tenant-fine-tune:acme"))
    assert report.by_rule == {"dataset.superseded": 1}


def test_when_an_unknown_dataset_is_pruned_then_it_fails_clearly(guard: Guard) -> None:
    with pytest.raises(DatasetError, match=r"dataset\.unknown"):
        guard.tenancy.datasets.prune("ds_nope", lambda label: True, reason="retention")


def test_when_a_tenants_datasets_are_deleted_then_files_and_rows_are_gone(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    guard.grant_agreement("globex")
    build(guard, tmp_path / "a1")
    build(guard, tmp_path / "a2", n=2)
    build(guard, tmp_path / "g1", "globex")
    acme_before = guard.open_dataset(tmp_path / "a1")

    assert guard.tenancy.datasets.delete("acme") == 2

    assert not (tmp_path / "a1").exists()
    assert not (tmp_path / "a2").exists()
    assert [d.tenant for d in guard.datasets()] == ["globex"]
    assert guard.open_dataset(tmp_path / "g1").manifest.tenant == "globex"
    report = guard.check(acme_before, sink=guard.resolve_sink("ft", kind="tenant-fine-tune:acme"))
    assert not report.ok
    guard.audit.flush()
    log = (tmp_path / "state" / "audit" / "audit.jsonl").read_bytes()
    entry = next(orjson.loads(x) for x in log.splitlines() if b'"datasets.delete"' in x)
    assert (entry["datasets"], entry["records"]) == (2, 6)
    assert b"acme" not in log


def test_when_a_dataset_is_streamed_through_checked_then_it_is_decided_before_the_first_record(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    build(guard, tmp_path / "ds")
    dataset = guard.open_dataset(tmp_path / "ds")
    acme = guard.resolve_sink("ft", kind="tenant-fine-tune:acme")
    globex = guard.resolve_sink("ft", kind="tenant-fine-tune:globex")

    assert [r["i"] for r in guard.checked(dataset, sink=acme)] == [0, 1, 2, 3]
    with pytest.raises(IsolationViolation, match=r"dataset\.tenant-mismatch"):
        guard.checked(dataset, sink=globex)


def test_when_a_verified_dataset_object_is_forged_then_the_sink_recomputes_the_root(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    build(guard, tmp_path / "ds")
    genuine = guard.open_dataset(tmp_path / "ds")
    _tamper(guard, tmp_path / "ds", "resealed")
    # digests taken from the tampered file, paired with the genuine signed manifest
    digests = b"".join(
        bytes.fromhex(content_digest(orjson.loads(x))) for x in lines(tmp_path / "ds")
    )
    forged = VerifiedDataset(tmp_path / "ds", genuine.manifest, digests, 1 << 20)
    train = fine_tune(guard)

    with pytest.raises(IsolationViolation, match=r"dataset\.records-mismatch"):
        train(forged)
    assert train.received == []


def test_when_a_builder_was_reported_or_written_then_it_takes_no_more_records(
    guard: Guard, tmp_path: Path
) -> None:
    guard.grant_agreement("acme")
    builder = guard.tenant_dataset("acme")
    builder.add_all(docs(guard, "acme", 1))
    assert builder.report().allowed == 1
    with pytest.raises(ValueError, match="already"):
        builder.add(docs(guard, "acme", 1)[0])
    builder.write(tmp_path / "ds")
    with pytest.raises(ValueError, match="already"):
        builder.write(tmp_path / "ds2")
