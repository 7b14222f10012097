"""Hugging Face ``datasets``: a ``Dataset`` or ``IterableDataset`` checked before a
sink, maps that keep their sources' labels, and ``save_to_disk``/``push_to_hub`` as
sinks.

::

    from kairo_guard.integrations.datasets import guard_dataset, guarded_map, sealed_dataset

    ds = sealed_dataset(guard.label_record(r, tenant="acme") for r in records)
    tokens = guarded_map(ds, tokenize, guard, batched=True, num_proc=4)
    train = guard_dataset(tokens, guard, "tenant-fine-tune:acme", num_proc=4)

``pip install "kairo-guard[datasets]"``. A ``Dataset`` is Arrow: a row read back has
its keys unified (a missing key is a null) and its numbers retyped, so it no longer
hashes to its seal. :func:`sealed_dataset` keeps each record's canonical content bytes
beside its seal (``_kairo_canonical``, :mod:`kairo_guard.core.columnar`); a sink decides
on them, and refuses a row whose values disagree with them.

:func:`guard_dataset` decides every row at a sink. A ``Dataset`` is decided by one
``map`` pass (``batched``, ``num_proc`` worker processes): each batch is one check of
its own in the audit log, in the process that reads it, and returns its decisions as
columns; the caller's process sums them into one report (``by_rule`` and counts across
every worker, violations numbered by dataset row) and drops them. Enforce raises
:class:`~kairo_guard.core.exceptions.IsolationViolation` with that report, filter
returns the rows that pass (``select``: no helper column), observe returns the dataset.
An ``IterableDataset`` is checked lazily, batch by batch as it is iterated (in
DataLoader workers too, where torch re-raises a refusal in the main process as a
``RuntimeError`` naming it): enforce raises when a batch holds a refused record, before
any row of that batch is yielded; filter drops. Use the dataset returned.

Caching: ``datasets`` reuses a ``map``/``filter`` result cached under a fingerprint of
the function and its arguments. A guard's decision depends on state no argument shows
(agreements, revocations, erasures, retention as time passes, content indexed since),
so no fingerprint computed up front could say when it changes. A guard pass therefore
never reads a cache (``load_from_cache_file=False``), writes none (``keep_in_memory``)
and gets a fresh random fingerprint, so no later call can be served its result. The
rows a filter keeps are a ``select`` of their indices, whose fingerprint follows from
the indices: a later cached step on them is reused only for the same rows.

:func:`guarded_map` keeps labels through a ``map``: each output is sealed again (by the
guard of the process that made it, so its content is indexed too) with the label of its
source row, the same tenant, class, source and creation time, so retention and erasure
still apply to it. A source label counts only if it restricts (customer content, usage
telemetry) and verifies exactly: valid seal, content digest matching the row, not
expired, tenant not erased since. Any other source gives an output without a seal,
which is unknown provenance, refused at every sink: a permitting label (operator data,
anonymized telemetry) is signed by the vetting role, which a training process is not,
so transformed permitting data must be vetted again (``guard.vetting.vet``). A batched
function may change the number of rows: it is called on runs of consecutive rows that
share one label (tenant, class, source), so an output can only come from rows of one
tenant, and it inherits the label, expiry included, of the one that expires first. A
plain ``ds.map`` keeps
the old seal and canonical bytes beside new values: such rows do not verify and are
refused. A guarded map is computed again on every call (no cache read, a fresh
fingerprint): sealing indexes and audits, and must see the sources' labels as they
verify now. Its result is written where ``map`` writes (a cache file beside a dataset on
disk, under that fresh name, which ``ds.cleanup_cache_files()`` removes), or kept in
memory (``keep_in_memory``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from os import PathLike
from typing import Any

import numpy as np

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets import Dataset, DatasetDict, Features, IterableDataset, Value
except ImportError as exc:  # pragma: no cover - the extra is installed with the tests
    raise ImportError(
        "kairo_guard.integrations.datasets needs Hugging Face datasets: "
        'pip install "kairo-guard[datasets]"'
    ) from exc

from kairo_guard.core.columnar import CANONICAL_FIELD
from kairo_guard.core.exceptions import IsolationViolation, KairoGuardError
from kairo_guard.core.report import CheckReport, Violation
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import SEAL_FIELD, Mode
from kairo_guard.guard import Guard
from kairo_guard.integrations._datasets_workers import (
    DECISIONS,
    DecisionPass,
    LabelInheritance,
    StreamCheck,
)
from kairo_guard.integrations.arrow import sealed_columns

__all__ = ["guard_dataset", "guarded_map", "push_to_hub", "save_to_disk", "sealed_dataset"]

BATCH_SIZE = 1000
"""Rows a worker decides (or maps) at once: one check, one fingerprint lookup."""
ReportCallback = Callable[[CheckReport], None]
"""Receives the report of a dataset's check."""


def sealed_dataset(records: Iterable[Mapping[str, Any]]) -> Dataset:
    """A ``Dataset`` of sealed records that still verifies as Arrow: one column per key
    any record has, the seal (``_kairo``) and the canonical content bytes
    (``_kairo_canonical``).

    Raises:
        ContentError: a record's content has no canonical JSON encoding.
    """
    return Dataset.from_dict(sealed_columns(records))


def guard_dataset(
    ds: Dataset | IterableDataset,
    guard: Guard,
    sink: Sink | str,
    *,
    mode: Mode | str | None = None,
    batch_size: int = BATCH_SIZE,
    num_proc: int | None = None,
    on_report: ReportCallback | None = None,
) -> Dataset | IterableDataset:
    """What of ``ds`` may pass ``sink`` (see the module docstring).

    Args:
        ds: the rows, each a record (its seal under ``_kairo``).
        guard: decides (workers open their own from ``guard.spec()``).
        sink: a sink, a configured sink name or a kind (``tenant-fine-tune:acme``).
        mode: ``enforce``, ``filter`` or ``observe`` (default: the sink's).
        batch_size: rows decided at once, as one check.
        num_proc: worker processes for a ``Dataset`` (``Dataset.map``'s).
        on_report: receives the report of a ``Dataset``'s check.

    Returns:
        ``ds``, the rows that pass (filter), or the lazily checked ``IterableDataset``.

    Raises:
        IsolationViolation: in enforce mode, for a refused record (a stream: when it is
            read), with the report.
        ConfigError: a bad sink or mode.
        ValueError: ``num_proc`` for an ``IterableDataset``.
    """
    resolved = guard.resolve_sink(sink, mode=mode)
    if isinstance(ds, IterableDataset):
        if num_proc is not None:
            raise ValueError(
                "an IterableDataset is checked as it is read: read it in parallel with "
                "DataLoader(num_workers=...) instead of num_proc"
            )
        return ds.filter(
            StreamCheck(guard, resolved), with_indices=True, batched=True, batch_size=batch_size
        )
    report, kept = _check(ds, guard, resolved, batch_size, num_proc)
    if on_report is not None:
        on_report(report)
    if resolved.mode is Mode.OBSERVE or report.blocked == 0:
        return ds
    if resolved.mode is Mode.ENFORCE:
        raise IsolationViolation(report)
    return ds.select(kept, keep_in_memory=True)


def _check(
    ds: Dataset, guard: Guard, sink: Sink, batch_size: int, num_proc: int | None
) -> tuple[CheckReport, Any]:
    """Decide every row of ``ds`` (one batch a check, in ``num_proc`` workers); return
    the report summed over them and the indices of the rows allowed (numpy)."""
    started, clock = guard.clock(), time.monotonic()
    decided = DECISIONS.empty_table()
    if len(ds):
        decided = (
            ds.with_format(None)
            .map(
                DecisionPass(guard, sink),
                with_indices=True,
                batched=True,
                batch_size=batch_size,
                num_proc=num_proc,
                remove_columns=ds.column_names,
                keep_in_memory=True,
                load_from_cache_file=False,
                new_fingerprint=_fresh(),
                desc=f"kairo-guard: {sink.label}",
            )
            .with_format("arrow")[:]
        )
    refused = decided.filter(pc.is_valid(decided.column("index")))
    kept = np.ones(len(ds), dtype=bool)
    at = refused.column("index").to_numpy()
    kept[at] = False
    total = pc.sum(decided.column("count")).as_py() or 0
    if total != len(ds) or int(kept.sum()) != len(ds) - len(at):
        raise KairoGuardError(
            f"the check of {len(ds)} rows did not return one decision a row: nothing passes"
        )
    limit = guard.checks.context.max_violations
    return _report(sink, decided, refused, started, clock, limit), np.flatnonzero(kept)


def _report(
    sink: Sink, decided: pa.Table, refused: pa.Table, started: float, clock: float, limit: int
) -> CheckReport:
    """One report for the decisions of every batch (refusals in dataset order)."""
    total = int(pc.sum(decided.column("count")).as_py() or 0)
    counts = decided.group_by("rule").aggregate([("count", "sum")]).to_pylist()
    refused = refused.sort_by("index")
    violations = tuple(
        Violation(r["index"], r["rule"], r["reason"] or "", r["digest"], r["tenant"])
        for r in refused.slice(0, limit).to_pylist()
    )
    return CheckReport(
        check_id=f"chk_{uuid.uuid4().hex[:20]}",
        sink=sink.name,
        kind=sink.label,
        mode=sink.mode,
        total=total,
        allowed=total - refused.num_rows,
        blocked=refused.num_rows,
        by_rule={c["rule"]: c["count_sum"] for c in counts},
        violations=violations,
        violations_omitted=refused.num_rows - len(violations),
        started_at=started,
        duration_s=time.monotonic() - clock,
    )


def _fresh() -> str:
    """A fingerprint no earlier or later call computes: its result is never reused."""
    return f"kairo-{uuid.uuid4().hex}"


def guarded_map(
    ds: Dataset | IterableDataset,
    function: Callable[..., Any],
    guard: Guard,
    *,
    batched: bool = False,
    batch_size: int = BATCH_SIZE,
    num_proc: int | None = None,
    remove_columns: str | Sequence[str] | None = None,
    fn_kwargs: Mapping[str, Any] | None = None,
    keep_in_memory: bool = False,
    features: Features | None = None,
    desc: str | None = None,
) -> Dataset | IterableDataset:
    """``ds.map(function, ...)`` whose outputs keep their sources' restricting labels
    (see the module docstring).

    ``function`` sees each row's content (Python values, without ``_kairo`` and
    ``_kairo_canonical``) and returns a dict (batched: of lists, any number of rows),
    merged as ``map`` merges: the input columns not in ``remove_columns``, then its own.
    Its values must have a canonical JSON form (lists and numbers, not bytes; numpy and
    torch values are converted with ``tolist``). The input's columns keep their types
    where their values fit; ``features`` (those of ``map``, the seal columns added)
    types the output, e.g. a new column whose first batch holds only nulls.

    Raises:
        ContentError: an output of a labelled source that cannot be sealed.
        StoreError: an output's content could not be indexed (nothing is sealed).
        TypeError, ValueError: ``function`` returned something ``map`` cannot take.
    """
    removed = [remove_columns] if isinstance(remove_columns, str) else list(remove_columns or ())
    columns = ds.column_names
    if columns is None:
        raise ValueError(
            "the dataset's columns are unknown (a stream without features): give it "
            "features, e.g. ds = ds.cast(features), before guarded_map"
        )
    schema = None if isinstance(ds, IterableDataset) else ds.features.arrow_schema
    inherit = LabelInheritance(
        guard, function, batched=batched, remove_columns=removed, fn_kwargs=fn_kwargs or {},
        types=None if schema is None else dict(zip(schema.names, schema.types, strict=True)),
    )  # fmt: skip
    if isinstance(ds, IterableDataset):
        if num_proc is not None:
            raise ValueError(
                "an IterableDataset is mapped as it is read: num_proc is for a Dataset"
            )
        return ds.map(
            inherit, with_indices=True, batched=True, batch_size=batch_size, remove_columns=columns
        )
    return ds.with_format(None).map(
        inherit,
        with_indices=True,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        remove_columns=columns,
        keep_in_memory=keep_in_memory,
        load_from_cache_file=False,
        new_fingerprint=_fresh(),
        features=None if features is None else _sealed_features(features),
        desc=desc or "kairo-guard: map",
    )


def _sealed_features(features: Features) -> Features:
    """``features`` with the seal columns' types."""
    return Features({**features, SEAL_FIELD: Value("string"), CANONICAL_FIELD: Value("binary")})


def save_to_disk(
    ds: Dataset | DatasetDict,
    path: str | PathLike[str],
    guard: Guard,
    *,
    sink: Sink | str,
    num_proc: int | None = None,
    on_report: ReportCallback | None = None,
    **options: Any,
) -> None:
    """Check every record at ``sink`` in enforce mode, then ``ds.save_to_disk(path)``.

    Writing to a shared destination is a sink: nothing is written unless every record
    (of every split of a ``DatasetDict``) is allowed. ``num_proc`` serves the check and
    the write; ``options`` go to ``save_to_disk``; ``on_report`` receives the report of
    each split, in order.

    Raises:
        IsolationViolation: a record was refused; nothing was written.
        TypeError: an ``IterableDataset`` (see :func:`push_to_hub`).
    """
    _enforce(ds, guard, sink, num_proc, on_report)
    ds.save_to_disk(path, num_proc=num_proc, **options)


def push_to_hub(
    ds: Dataset | DatasetDict,
    repo_id: str,
    guard: Guard,
    *,
    sink: Sink | str,
    num_proc: int | None = None,
    on_report: ReportCallback | None = None,
    **options: Any,
) -> Any:
    """Check every record at ``sink`` in enforce mode, then ``ds.push_to_hub(repo_id)``
    and return what it returns (the commit).

    Pushing is a sink: the check runs before any network call, and nothing is pushed
    unless every record (of every split) is allowed. ``num_proc`` serves the check and
    the upload; ``options`` go to ``push_to_hub``; ``on_report`` receives the report of
    each split, in order. An ``IterableDataset`` is refused: checking it means reading
    it, and pushing reads it again, perhaps not the same rows; check and materialize it
    first.

    Raises:
        IsolationViolation: a record was refused; nothing was pushed.
        TypeError: an ``IterableDataset``.
    """
    _enforce(ds, guard, sink, num_proc, on_report)
    return ds.push_to_hub(repo_id, num_proc=num_proc, **options)


def _enforce(
    ds: Dataset | DatasetDict,
    guard: Guard,
    sink: Sink | str,
    num_proc: int | None,
    on_report: ReportCallback | None,
) -> None:
    """Check ``ds`` (every split, before anything is written) in enforce mode."""
    if not isinstance(ds, Dataset | DatasetDict):
        raise TypeError(
            "save_to_disk and push_to_hub check a Dataset or DatasetDict whole before "
            f"writing it, not a {type(ds).__name__}"
        )
    resolved = guard.resolve_sink(sink, mode=Mode.ENFORCE)
    splits = list(ds.values()) if isinstance(ds, DatasetDict) else [ds]
    reports = [_check(split, guard, resolved, BATCH_SIZE, num_proc)[0] for split in splits]
    for report in reports:
        if on_report is not None:
            on_report(report)
        if report.blocked:
            raise IsolationViolation(report)
