"""Ray Data: guard a dataset that outgrows one machine.

``pip install "kairo-guard[ray]"``. :func:`guard_dataset` runs the sink check as a
``map_batches`` over Arrow batches, with a class that builds its decision path once per
worker, and no worker touches the guard's database:

* the driver awaits the index watermark (everything ingested before the job started is
  indexed), then takes a :class:`JobSnapshot`: the HMAC key ring (to open ``kg1``
  seals), the policy, the sink, the sink tenant's agreement and the erased tenants as
  of now, every vetted shard (verified once, here: signature, Merkle root; compared
  with what was indexed since it was vetted) and the fingerprint net as a Bloom filter;
* the snapshot goes into the object store once; each worker reads it from there, the
  Bloom filter's bits and the shards' digests zero-copy and read-only, and decides each
  batch with the same :class:`~kairo_guard.enforce.check.SinkCheck` the rest of the
  guard uses, over a context built from the snapshot;
* a record that would need content checks at a shared sink (a vetted record compared
  with content indexed since, or one vetted under another policy) gets the Bloom filter
  (``fingerprint.tenant-content`` on a hit) and is otherwise refused with
  ``vetting.recheck-needed``: the PII gate and the customer identifier index are not
  on workers. Re-vet it, or scan it with ``kairo-guard scan`` (fail closed);
* each batch comes back with its decisions in two columns; the driver adds them up into
  one :class:`~kairo_guard.core.report.CheckReport` (violations by content digest, no
  position: blocks have none across a cluster), writes it to the audit log, and then
  ``enforce`` fails the job with :class:`~kairo_guard.core.exceptions.IsolationViolation`
  if anything was refused, ``filter`` lets the records that passed flow on (the
  decision columns dropped), ``observe`` lets everything through.

Decisions are those of the snapshot: a tenant erased while the job runs is refused from
the next job on. The driver checks the sink tenant's agreement again at the end: if it
went away while the job ran, every record counts as refused (``agreement.inactive``):
``enforce`` fails, ``filter`` lets nothing flow on. Per-record audit rows are not
written for a Ray job; its summary and violations are.
"""

from __future__ import annotations

import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from kairo_guard.core.exceptions import IsolationViolation, SealError
from kairo_guard.core.keys import PURPOSE_FINGERPRINT, KeyRing
from kairo_guard.core.policy import Decision, Policy
from kairo_guard.core.report import CheckReport, Violation
from kairo_guard.core.seal import Label, SealCodec
from kairo_guard.core.shard import digest_index, parse_shard_seal
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import Mode, Outcome, TenantId
from kairo_guard.detect.bloom import FingerprintFilter
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE, Fingerprinter
from kairo_guard.enforce.check import CheckContext, SinkCheck
from kairo_guard.enforce.shards import ExportedShard
from kairo_guard.guard import Guard

PASSED_COLUMN = "_kairo_passed"
"""Decision columns of a checked batch: whether the record passed, the deciding rule and,
for a refused record, its content digest (null for one that passed)."""
RULE_COLUMN = "_kairo_rule"
DIGEST_COLUMN = "_kairo_digest"
_DECISIONS = [PASSED_COLUMN, RULE_COLUMN, DIGEST_COLUMN]
RECHECK_RULE = "vetting.recheck-needed"
REVOKED_RULE = "agreement.inactive"
"""Every record of a job whose sink tenant's agreement went away while it ran."""
BATCH_ROWS = 4096
ReportCallback = Callable[[CheckReport], None]


@dataclass(frozen=True)
class JobSnapshot:
    """What a worker decides with, as of the job's start (picklable, no live handle)."""

    check_id: str
    key: bytes
    policy: Policy
    sink: Sink
    mode: Mode
    agreements: Mapping[TenantId, bool]
    erased: Mapping[str, float]
    shards: tuple[ExportedShard, ...]
    bloom: FingerprintFilter | None
    max_violations: int


def snapshot(guard: Guard, sink: str | Sink, mode: str | None = None) -> JobSnapshot:
    """Take the driver's snapshot for a job at ``sink`` (awaits the index watermark).

    Raises:
        IndexLagging: the index did not catch up within the guard's bound.
    """
    resolved = guard.resolve_sink(sink)
    ctx = guard.checks.context
    shared = resolved.kind.shared
    if shared:
        guard.wait_indexed()
    now = ctx.clock()
    agreements = {} if resolved.tenant is None else {
        resolved.tenant: ctx.agreement_active(resolved.tenant, now)
    }  # fmt: skip
    registry = ctx.shards if shared else None
    return JobSnapshot(
        check_id=f"chk_{uuid.uuid4().hex[:20]}",
        key=guard.keys.to_json(),
        policy=guard.policy,
        sink=resolved,
        mode=Mode(mode) if mode else resolved.mode,
        agreements=agreements,
        erased=dict(ctx.erased() if ctx.erased is not None else {}),
        shards=tuple(_shippable(s) for s in registry.export()) if registry is not None else (),
        bloom=_bloom(guard) if shared else None,
        max_violations=ctx.max_violations,
    )


def _shippable(shard: ExportedShard) -> ExportedShard:
    # a numpy array travels out of band: workers read it from the object store without
    # a copy (bytes would be copied into every worker)
    return shard._replace(digests=np.frombuffer(shard.digests, dtype=np.uint8))


def _bloom(guard: Guard) -> FingerprintFilter:
    with tempfile.TemporaryDirectory(prefix="kairo-guard-ray-") as tmp:
        path = Path(tmp) / "net.bloom"
        guard.export_fingerprint_filter(path)
        return guard.load_fingerprint_filter(path)  # verified, as a worker would


class _Shards:
    """Vetted shards from a snapshot, as the seal codec and a sink check ask for them."""

    generation = 0

    def __init__(self, shards: tuple[ExportedShard, ...]) -> None:
        self._shards = {s.shard_id: s for s in shards}
        self._by_label = {id(s.label): s for s in shards}
        self._indexes: dict[str, dict[str, int]] = {}

    def _index(self, shard: ExportedShard) -> dict[str, int]:
        found = self._indexes.get(shard.shard_id)
        if found is None:
            # a byte array from the object store: digest_index reads any buffer
            found = self._indexes[shard.shard_id] = digest_index(shard.digests)  # type: ignore[arg-type]
        return found

    def verify(self, seal: str) -> tuple[Label, str]:
        shard_id, digest = parse_shard_seal(seal)
        shard = self._shards.get(shard_id)
        if shard is None:
            raise SealError(
                f"unknown shard {shard_id} (not in the job's snapshot)", code="unknown-key"
            )
        if digest not in self._index(shard):
            raise SealError("the record's digest is not one of its shard's", code="bad-tag")
        return shard.label, digest

    def clean(self, label: Label, digest: str) -> bool:
        shard = self._by_label.get(id(label))
        return shard is not None and shard.current and self._index(shard)[digest] not in shard.dirty

    def refresh(self) -> None:
        """Nothing to compare: the driver compared every shard when it took the snapshot."""

    def view(self) -> list[tuple[str, Label, dict[str, int], frozenset[int]]]:
        live = [s for s in self._shards.values() if s.current]
        return [(s.shard_id, s.label, self._index(s), s.dirty) for s in live]


class _Unaudited:
    """Workers write no audit entries: the driver audits the job's report."""

    def append(self, entry: Mapping[str, Any]) -> None:
        return None


class BatchGuard:
    """The ``map_batches`` callable: built once per worker from the snapshot in the
    object store; decides each Arrow batch and returns it with the decision columns."""

    def __init__(self, ref: JobSnapshot | ray.ObjectRef[JobSnapshot]) -> None:
        # from the object store: its arrays are read zero-copy
        snap: JobSnapshot = ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref
        self._snap = snap
        keys = KeyRing.from_json(snap.key)
        shards = _Shards(snap.shards)
        bloom, printer = snap.bloom, None
        if bloom is not None:
            printer = Fingerprinter(keys.subkey(PURPOSE_FINGERPRINT, keys.pseudonym_key_id))

        def recheck(content: object) -> Decision | None:
            found = None if bloom is None or printer is None else bloom.overlap(content, printer)
            if found is not None:
                return Decision(Outcome.BLOCK, FINGERPRINT_RULE, found.reason())
            reason = "needs the content checks a Ray worker does not run: re-vet it, or scan it"
            return Decision(Outcome.BLOCK, RECHECK_RULE, reason)

        agreements = dict(snap.agreements)
        self._context = CheckContext(
            codec=SealCodec(keys, shards=shards),
            policy=snap.policy,
            audit=_Unaudited(),
            pseudonym=keys.pseudonym,
            agreement_active=lambda tenant, _now: agreements.get(tenant, False),
            clock=time.time,
            max_violations=1 << 30,  # every refused record of a batch, for its digest
            content_checks=(recheck,),
            operator_checks=(recheck,),
            erased=lambda: snap.erased,
            shards=shards,  # type: ignore[arg-type]
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        run = SinkCheck(self._context, self._snap.sink, Mode.FILTER, None)
        decisions = run.decide_many(batch.to_pylist())
        digests: list[str | None] = [None] * len(decisions)
        for violation in run.finish().violations:
            digests[violation.index] = violation.digest
        passed = [d.outcome is Outcome.ALLOW for d in decisions]
        batch = batch.append_column(PASSED_COLUMN, pa.array(passed, pa.bool_()))
        batch = batch.append_column(RULE_COLUMN, pa.array([d.rule for d in decisions], pa.string()))
        return batch.append_column(DIGEST_COLUMN, pa.array(digests, pa.string()))


_per_process: dict[str, BatchGuard] = {}


def _cpus() -> int:
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return max(1, int(resources.get("CPU", 1)))


def check_batch(batch: pa.Table, ref: JobSnapshot | ray.ObjectRef[JobSnapshot]) -> pa.Table:
    """The ``map_batches`` function of a job run as tasks: a :class:`BatchGuard` built
    once per worker process and job (Ray reuses its worker processes), so no actor is
    started for a job."""
    key = ref.hex() if isinstance(ref, ray.ObjectRef) else ref.check_id
    found = _per_process.get(key)
    if found is None:
        _per_process.clear()  # one job's snapshot at a time in a process
        found = _per_process[key] = BatchGuard(ref)
    return found(batch)


def _passed(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.field(PASSED_COLUMN)).drop_columns(_DECISIONS)


def _undecorated(batch: pa.Table) -> pa.Table:
    return batch.drop_columns(_DECISIONS)


def guard_dataset(
    ds: ray.data.Dataset,
    guard: Guard,
    *,
    sink: str | Sink,
    mode: str | None = None,
    batch_size: int = BATCH_ROWS,
    concurrency: int | None = None,
    actors: bool = False,
    on_report: ReportCallback | None = None,
) -> ray.data.Dataset:
    """Check every record of ``ds`` at ``sink`` on the cluster; return what may flow on
    (see the module docstring). The job runs, and its report is written, before this
    returns: the dataset it returns is materialized.

    The checks run as tasks (:func:`check_batch`: a :class:`BatchGuard` once per worker
    process and job, no actor to start; Ray Data ramps the number of tasks up as the job
    runs, to ``concurrency`` at most). With ``actors=True`` they run on a pool of
    ``concurrency`` actors (default: one a CPU) holding one :class:`BatchGuard` each,
    all started at once: no ramp-up, but the pool holds its CPUs for the whole job, so
    stages before it (reading files) need CPUs of their own: materialize the input
    first, or leave CPUs free.

    Raises:
        IsolationViolation: in enforce mode, when any record is refused (it carries the
            report).
        IndexLagging: at a shared sink, when the index does not catch up in time.
    """
    started, mono = time.time(), time.monotonic()
    snap = snapshot(guard, sink, mode)
    ref = ray.put(snap)
    common: dict[str, Any] = {"batch_format": "pyarrow", "batch_size": batch_size}
    if actors:
        with warnings.catch_warnings():  # a dataset of fewer blocks than actors is fine
            warnings.filterwarnings("ignore", "The minimum number of concurrent actors")
            pool = ray.data.ActorPoolStrategy(size=concurrency or _cpus())
            checked = ds.map_batches(
                BatchGuard, fn_constructor_args=(ref,), compute=pool, **common
            ).materialize()
    else:
        checked = ds.map_batches(  # (Ray types fn as taking the batch alone; fn_args follow)
            check_batch,  # type: ignore[arg-type]
            fn_args=(ref,),
            compute=ray.data.TaskPoolStrategy(size=concurrency),
            **common,
        ).materialize()
    report = _report(snap, checked, started, time.monotonic() - mono)
    revoked = _revoked_since(guard, snap)
    if revoked:  # the snapshot's agreement is gone: nothing it let through may pass
        report = replace(
            report, allowed=0, blocked=report.total, by_rule={REVOKED_RULE: report.total},
            violations=(), violations_omitted=report.total,
        )  # fmt: skip
    guard.audit.append({"event": "check.ray", **report.to_dict(), "workers": concurrency})
    if on_report is not None:
        on_report(report)
    if snap.mode is Mode.ENFORCE and report.blocked:
        raise IsolationViolation(report)
    if revoked and snap.mode is Mode.FILTER:
        nothing: ray.data.Dataset = checked.limit(0).drop_columns(_DECISIONS)
        return nothing
    keep = _undecorated if snap.mode is Mode.OBSERVE else _passed
    flowing: ray.data.Dataset = checked.map_batches(
        keep, batch_format="pyarrow", zero_copy_batch=True
    )
    return flowing


def _revoked_since(guard: Guard, snap: JobSnapshot) -> bool:
    """Whether the sink tenant's agreement, active in the snapshot, is gone now."""
    tenant, ctx = snap.sink.tenant, guard.checks.context
    if tenant is None or not snap.agreements.get(tenant):
        return False
    return not ctx.agreement_active(tenant, ctx.clock())


def _report(
    snap: JobSnapshot, checked: ray.data.Dataset, started: float, took: float
) -> CheckReport:
    counts: Counter[str] = Counter()
    violations: list[Violation] = []
    total = allowed = 0
    reason = "refused on a Ray worker (index: the record's place in the checked dataset)"
    batch: pa.Table
    for batch in checked.select_columns(_DECISIONS).iter_batches(
        batch_format="pyarrow", batch_size=1 << 20
    ):
        for entry in pc.value_counts(batch.column(RULE_COLUMN)).to_pylist():
            counts[entry["values"]] += entry["counts"]
        passed = batch.column(PASSED_COLUMN)
        allowed += int(pc.sum(passed).as_py() or 0)
        room = snap.max_violations - len(violations)
        if room > 0 and int(pc.sum(pc.invert(passed)).as_py() or 0):
            at = pc.indices_nonzero(pc.invert(passed)).to_pylist()[:room]
            rules = pc.take(batch.column(RULE_COLUMN), at).to_pylist()
            digests = pc.take(batch.column(DIGEST_COLUMN), at).to_pylist()
            violations += [
                Violation(total + i, rule, reason, digest, None)
                for i, rule, digest in zip(at, rules, digests, strict=True)
            ]
        total += batch.num_rows
    return CheckReport(
        check_id=snap.check_id,
        sink=snap.sink.name,
        kind=snap.sink.kind.value,
        mode=snap.mode,
        total=total,
        allowed=allowed,
        blocked=total - allowed,
        by_rule=dict(counts),
        violations=tuple(violations),
        violations_omitted=total - allowed - len(violations),
        started_at=started,
        duration_s=took,
    )
