"""What the Hugging Face ``datasets`` adapter runs where the rows are: the callables its
passes hand to ``Dataset.map`` and ``IterableDataset.filter``/``map``, one batch at a
time, in this process or in ``datasets``' worker processes (``num_proc``) and DataLoader
workers.

Each holds its guard's :class:`~kairo_guard.workers.GuardSpec`. In the process that
made it, it uses the caller's guard; anywhere else (pickled to a worker, or inherited
through ``fork``, where the caller's guard is disarmed) it opens that process's guard
with ``Guard.from_spec`` (once a process) and never receives a live one. A pass made
inside ``guard.tenant_context(t)`` decides in that tenant's context in the workers too
(a context only ever refuses more). Every batch ends with the guard's audit entries
written: pool workers are ended without a chance to flush them.

:class:`DecisionPass` decides a batch at a sink and returns its decisions as columns
(the driver sums them into one report); :class:`StreamCheck` decides a stream's batch
and keeps, drops or refuses its rows; :class:`LabelInheritance` runs a user's function
and seals each output with the restricting label of the rows it came from
(:mod:`kairo_guard.integrations.datasets` says when it does and why).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from itertools import groupby
from typing import Any

import pyarrow as pa

from kairo_guard.core.columnar import CANONICAL_FIELD, with_canonical
from kairo_guard.core.content import content_digest
from kairo_guard.core.context import current_tenant
from kairo_guard.core.exceptions import ContentError, IsolationViolation, SealError
from kairo_guard.core.policy import Decision
from kairo_guard.core.report import CheckReport
from kairo_guard.core.seal import Label
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import SEAL_FIELD, Mode, Outcome
from kairo_guard.enforce.check_batch import RecordParts
from kairo_guard.enforce.labels import split_record
from kairo_guard.guard import Guard

DECISIONS = pa.schema(
    [
        ("index", pa.int64()),
        ("rule", pa.string()),
        ("count", pa.int64()),
        ("reason", pa.string()),
        ("digest", pa.string()),
        ("tenant", pa.string()),
    ]
)
"""What a decision pass returns for a batch: one row per refused record (``index``: its
row in the dataset, ``count`` 1) and one per rule that allowed records (``index``
null, ``count`` how many), so the result stays small whatever the dataset's size."""
_HELPERS = frozenset({SEAL_FIELD, CANONICAL_FIELD})
_ALLOW = Outcome.ALLOW


class _WithGuard:
    """Holds a guard's spec, and the guard itself for the process that made it."""

    def __init__(self, guard: Guard) -> None:
        self.spec = guard.spec()
        self.tenant = current_tenant()
        self._guard: Guard | None = guard
        self._pid = os.getpid()

    def guard(self) -> Guard:
        """The caller's guard in its own process, else this process's from the spec."""
        if self._guard is not None and self._pid == os.getpid():
            return self._guard
        return Guard.from_spec(self.spec)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_guard": None}  # a live guard never crosses

    def __deepcopy__(self, memo: dict[int, object]) -> _WithGuard:
        twin = object.__new__(type(self))  # datasets copies its pipelines: same guard
        twin.__dict__.update(self.__dict__)
        return twin


def rows_of(batch: Mapping[str, Sequence[Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` rows of a batch given as columns."""
    names = list(batch)
    if not names:
        return [{} for _ in range(count)]
    columns = [batch[name] for name in names]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    if len(rows) != count:
        raise ValueError(f"a batch of {len(rows)} rows came with {count} indices")
    return rows


def _decide(
    holder: _WithGuard, sink: Sink, rows: list[dict[str, Any]], indices: Sequence[int]
) -> tuple[list[Decision], CheckReport]:
    """Decide ``rows`` (dataset rows ``indices``) at ``sink`` as one check, in the
    tenant context the pass was made in."""
    guard = holder.guard()
    with guard.tenant_context(holder.tenant) if holder.tenant else nullcontext():
        run = guard.checks.start(sink)
        pairs = zip(rows, indices, strict=True)
        parts = [RecordParts(*split_record(row), position=i) for row, i in pairs]
        decisions = run.decide_batch(parts)
        report = run.finish()
    guard.audit.flush()
    return decisions, report


class DecisionPass(_WithGuard):
    """Decides a batch at ``sink`` (one check a batch, rows numbered by their dataset
    index) and returns its decisions as a table of :data:`DECISIONS`."""

    def __init__(self, guard: Guard, sink: Sink) -> None:
        super().__init__(guard)
        self.sink = sink

    def __call__(self, batch: Mapping[str, Sequence[Any]], indices: list[int]) -> pa.Table:
        rows = rows_of(batch, len(indices))
        decisions, report = _decide(self, self.sink, rows, indices)
        allowed = Counter(d.rule for d in decisions if d.outcome is _ALLOW)
        found = {v.index: v for v in report.violations}
        refused = [
            (index, decision, found.get(index))
            for index, decision in zip(indices, decisions, strict=True)
            if decision.outcome is not _ALLOW
        ]
        columns = {
            "index": [None] * len(allowed) + [index for index, _, _ in refused],
            "rule": [*allowed, *(d.rule for _, d, _ in refused)],
            "count": [*allowed.values(), *([1] * len(refused))],
            "reason": [None] * len(allowed) + [d.reason for _, d, _ in refused],
            "digest": [None] * len(allowed) + [v and v.digest for _, _, v in refused],
            "tenant": [None] * len(allowed) + [v and v.tenant for _, _, v in refused],
        }
        return pa.table(columns, schema=DECISIONS)


class StreamCheck(_WithGuard):
    """Decides a stream's batch at ``sink`` and says which rows go on: those allowed
    (filter), all (observe), or all of them or :class:`IsolationViolation` (enforce)."""

    def __init__(self, guard: Guard, sink: Sink) -> None:
        super().__init__(guard)
        self.sink = sink

    def __call__(self, batch: Mapping[str, Sequence[Any]], indices: list[int]) -> list[bool]:
        rows = rows_of(batch, len(indices))
        decisions, report = _decide(self, self.sink, rows, indices)
        if self.sink.mode is Mode.OBSERVE:
            return [True] * len(rows)
        keep = [d.outcome is _ALLOW for d in decisions]
        if self.sink.mode is Mode.ENFORCE and not all(keep):
            raise IsolationViolation(report)
        return keep


LabelKey = tuple[str, str, str] | None
"""What outputs may share a label: (tenant, class, source) of a verified restricting
label, or None for rows whose outputs get none."""


class LabelInheritance(_WithGuard):
    """Runs ``function`` on a batch and seals each output with the restricting label
    of the rows it came from, or leaves it unsealed (see the adapter's docstring).

    Args:
        guard: seals the outputs (the caller's, or each worker's from its spec).
        function: the user's function: one row in, one row out; or, when ``batched``,
            columns in, columns out (any number of rows).
        batched: whether ``function`` takes columns.
        remove_columns: input columns the outputs do not keep.
        fn_kwargs: keyword arguments for ``function``.
        types: the Arrow types of the input's columns: return an Arrow table whose
            columns keep them where their values fit (as ``map`` keeps them), for a
            ``Dataset``; None: return columns (an ``IterableDataset``).
    """

    def __init__(
        self,
        guard: Guard,
        function: Callable[..., Any],
        *,
        batched: bool,
        remove_columns: Sequence[str],
        fn_kwargs: Mapping[str, Any],
        types: Mapping[str, pa.DataType] | None,
    ) -> None:
        super().__init__(guard)
        self.function, self.batched, self.types = function, batched, types
        self.remove = frozenset(remove_columns)
        self.fn_kwargs = dict(fn_kwargs)

    def __call__(self, batch: Mapping[str, Sequence[Any]], indices: list[int]) -> Any:
        guard = self.guard()
        rows = rows_of(batch, len(indices))
        now, erased = guard.clock(), guard.store.erased_tenants()
        labels = [_source_label(guard, row, now, erased) for row in rows]
        sealed = [
            _sealed(guard, content, label)
            for label, inputs in self._groups(rows, labels)
            for content in self._outputs(inputs)
        ]
        guard.audit.flush()
        return _columns(sealed) if self.types is None else _table(sealed, self.types)

    def _groups(
        self, rows: list[dict[str, Any]], labels: list[Label | None]
    ) -> list[tuple[Label | None, list[dict[str, Any]]]]:
        """The rows ``function`` sees at once, with the label of their outputs: each
        row alone; or, batched, each run of rows whose labels agree on tenant, class and
        source (the label that expires first), so no call sees two tenants' rows."""
        pairs = zip(rows, labels, strict=True)
        if not self.batched:
            return [(label, [_content(row)]) for row, label in pairs]
        groups = []
        for key, run in groupby(pairs, key=lambda pair: _key(pair[1])):
            members = list(run)
            label = None if key is None else min((m[1] for m in members), key=_first_to_expire)
            groups.append((label, [_content(m[0]) for m in members]))
        return groups

    def _outputs(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What ``function`` makes of rows that share one label, merged as ``map``
        merges: the input columns it keeps, then its own."""
        if not self.batched:
            merged = []
            for row in inputs:
                made = _plain_row(self.function(dict(row), **self.fn_kwargs))
                merged.append({**{k: v for k, v in row.items() if k not in self.remove}, **made})
            return merged
        columns = {name: [row.get(name) for row in inputs] for name in _names(inputs)}
        made = _plain_columns(self.function(columns, **self.fn_kwargs))
        kept = {k: v for k, v in columns.items() if k not in self.remove and k not in made}
        count = len(next(iter(made.values()))) if made else len(inputs)
        if kept and count != len(inputs):
            raise ValueError(
                f"the function made {count} rows of {len(inputs)} but the outputs keep the "
                f"input columns {sorted(kept)}: list them in remove_columns"
            )
        return rows_of({**kept, **made}, count)


def _source_label(
    guard: Guard, row: Mapping[str, Any], now: float, erased: Mapping[str, float]
) -> Label | None:
    """The row's restricting label, if its seal verifies against the row exactly and the
    label still holds (not expired, its tenant not erased since); else None."""
    seal = row.get(SEAL_FIELD)
    if not isinstance(seal, str):
        return None
    try:
        label = guard.open_seal(seal)
        content, _ = split_record(row)
        matches = content_digest(content) == label.digest
    except (SealError, ContentError):
        return None
    if not matches or not label.data_class.restricts or label.tenant is None:
        return None
    erased_at = erased.get(guard.keys.pseudonym(label.tenant))
    if label.expired(now) or (erased_at is not None and label.created_at <= erased_at):
        return None
    return label


def _key(label: Label | None) -> LabelKey:
    if label is None or label.tenant is None:
        return None
    return label.tenant, label.data_class.value, label.source


def _first_to_expire(label: Label | None) -> tuple[bool, int, int]:
    # an output of several rows inherits the label that expires first (then the oldest)
    if label is None:
        return (False, 0, 0)
    return (label.expires_at is None, label.expires_at or 0, label.created_at)


def _sealed(guard: Guard, content: dict[str, Any], label: Label | None) -> dict[str, Any]:
    """``content`` with its seal and canonical bytes: its source's label, made again for
    it (of the rows it came from, the one that expires first), or none."""
    if label is None or label.tenant is None:
        return {**content, SEAL_FIELD: None, CANONICAL_FIELD: None}
    # the source's label whole, expiry included: retention runs from the source
    seal = guard.derive_seal(content, label)
    return with_canonical({**content, SEAL_FIELD: seal})


def _content(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _HELPERS}


def _plain(value: Any) -> Any:
    # numpy and torch values (a tokenizer's arrays) as the lists and numbers they hold
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, list) else value


def _plain_row(made: object) -> dict[str, Any]:
    if made is None:
        return {}
    if not isinstance(made, Mapping):
        raise TypeError(f"the function must return a dict (or None), not {type(made).__name__}")
    return {k: _plain(v) for k, v in made.items() if k not in _HELPERS}


def _plain_columns(made: object) -> dict[str, list[Any]]:
    columns = _plain_row(made)
    for name, values in columns.items():
        if not isinstance(values, list | tuple):
            raise TypeError(f"a batched function must return lists; column {name!r} is not one")
        columns[name] = [_plain(v) for v in values]
    if len({len(v) for v in columns.values()}) > 1:
        raise ValueError("the function returned columns of different lengths")
    return columns


def _names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return list(names)


def _columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {name: [row.get(name) for row in rows] for name in _names(rows)}


def _table(rows: Sequence[Mapping[str, Any]], types: Mapping[str, pa.DataType]) -> pa.Table:
    """The rows as an Arrow table: the seal columns typed (a first batch of unsealed
    outputs would type them null, and the next batch could not be written), the input's
    columns in their input types where the values fit, the rest inferred."""
    columns: dict[str, Any] = {}
    for name, values in _columns(rows).items():
        if name not in _HELPERS:
            columns[name] = _array(values, types.get(name))
    columns[SEAL_FIELD] = pa.array([row.get(SEAL_FIELD) for row in rows], pa.string())
    columns[CANONICAL_FIELD] = pa.array([row.get(CANONICAL_FIELD) for row in rows], pa.binary())
    return pa.table(columns)


def _array(values: list[Any], kind: pa.DataType | None) -> pa.Array:
    if kind is not None:
        try:
            return pa.array(values, kind)
        except (pa.ArrowException, TypeError, ValueError):
            pass  # the function changed the column's type: inferred, as map would
    return pa.array(values)
