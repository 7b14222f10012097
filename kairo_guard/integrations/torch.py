"""PyTorch: datasets that check records as they load, in DataLoader workers too.

::

    from kairo_guard.integrations.torch import guarded_loader

    loader = guarded_loader(dataset, guard, "tenant-fine-tune:acme", batch_size=32, num_workers=4)
    for batch in loader:  # every record was checked in the process that loaded it
        ...

Records are checked one by one where they are loaded (``__getitem__``,
``__getitems__``, ``__iter__`` of the wrappers), before any ``collate_fn`` turns them
into tensors and lists. A worker never receives a live guard: the wrappers carry
``guard.spec()`` and each process opens its own with ``Guard.from_spec(spec)`` on its
first record (a guard given in the main process is used there, and dropped when the
wrapper is pickled). A check made inside ``guard.tenant_context(t)`` is made in that
tenant's context in the workers too (a context only ever refuses more).

When a check ends, so that its report and audit summary are written:

- :class:`GuardedDataset` (map-style): one check per fetch. A DataLoader fetches a batch
  with one ``__getitems__`` call; the batch is decided at once (one fingerprint lookup)
  and its check finished before the batch leaves the worker, so nothing waits for the
  worker's exit. ``enforce`` raises, ``observe`` passes and records. ``filter`` is not
  offered: a sampler asks for ``len(dataset)`` indices, and an index cannot be dropped
  (a shorter batch can be empty, which ``default_collate`` fails on, and a ``None`` in
  its place relies on every ``collate_fn`` to drop it: one that forgets hands it to
  training). Filter a stream (:class:`GuardedIterableDataset`) instead.
- :class:`GuardedIterableDataset`: one check per iteration (an epoch, in each worker),
  finished when the iteration ends, however it ends. ``filter`` drops refused records.
  It is transparent to sharding: each worker iterates the dataset as torch would
  without the wrapper, so a dataset that splits itself by ``get_worker_info()`` (as
  Hugging Face's does) keeps doing so; for one that does not, ``shard=True`` keeps
  worker *k* of *n* to records *k*, *k + n*, ... (the others are neither checked nor
  yielded there).
- At exit, a process finishes the checks it left open on guards it opened from a spec
  (an iteration that stopped early) and closes those guards, which writes what they
  buffered: multiprocessing's exit finalizers run this in every DataLoader worker on
  its way out (a forked child skips ``atexit``; it runs these) and at interpreter exit
  in the main process. A worker killed first (by a signal, or by the DataLoader after
  its 5 s shutdown timeout) loses what its guard had not yet written (at most
  ``flush_interval``), never a refusal: a worker writes that before raising it. A guard
  given in the main process stays its owner's to close.

A refusal in a worker is raised as :class:`WorkerViolation`, an
:class:`~kairo_guard.core.exceptions.IsolationViolation` that the main process receives
with its report, its rule first in the message. Needs ``pip install "kairo-guard[torch]"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import replace
from itertools import islice
from multiprocessing import util as mp_util
from typing import Any, Protocol, TypeVar

from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from kairo_guard.core.context import current_tenant
from kairo_guard.core.exceptions import ConfigError, IsolationViolation
from kairo_guard.core.report import CheckReport, Violation
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import Mode
from kairo_guard.enforce.check import SinkCheck
from kairo_guard.guard import Guard
from kairo_guard.workers import GuardSpec

__all__ = [
    "GuardedDataset",
    "GuardedIterableDataset",
    "MapDataset",
    "WorkerViolation",
    "guarded_loader",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

REPORT_PREFIX = "kairo-report: "
"""Starts the line of a :class:`WorkerViolation`'s text that carries its report."""
CARRIED_VIOLATIONS = 8
"""Violations that report line lists; the rest are counted in ``violations_omitted``
(the audit log has every decision)."""
EXIT_PRIORITY = 20
"""Of this module's multiprocessing exit finalizer (higher runs earlier)."""


class MapDataset(Protocol[T_co]):
    """A map-style dataset: records by index, and how many (a list will do)."""

    def __getitem__(self, index: int, /) -> T_co: ...

    def __len__(self) -> int: ...


class WorkerViolation(IsolationViolation):
    """A refusal in a DataLoader worker process (``enforce`` mode).

    A DataLoader re-raises a worker's error in the main process from its class and its
    formatted traceback only, so this error's text ends with its report as one JSON
    line (``kairo-report: {...}``), and the instance the main process receives is made
    from that text: the same report (at most :data:`CARRIED_VIOLATIONS` violations
    listed), the refusal first in the message and the worker's traceback after it.
    """

    def __init__(self, report_or_text: CheckReport | str) -> None:
        if isinstance(report_or_text, CheckReport):
            super().__init__(report_or_text)
            self.args = (f"{self.args[0]}\n{REPORT_PREFIX}{_encoded(report_or_text)}",)
            return
        lines = report_or_text.rstrip().splitlines()
        carried = [line for line in lines if line.startswith(REPORT_PREFIX)]
        if not carried:  # the DataLoader raises RuntimeError(text) instead: still an error
            raise ValueError("not the text of a WorkerViolation: it carries no report")
        super().__init__(_decoded(carried[-1].removeprefix(REPORT_PREFIX)))
        traceback = "\n".join(line for line in lines if not line.startswith(REPORT_PREFIX))
        self.args = (f"{self.args[0]}\n{traceback}",)


def _encoded(report: CheckReport) -> str:
    data = report.to_dict()
    data["violations"] = data["violations"][:CARRIED_VIOLATIONS]
    data["violations_omitted"] += len(report.violations) - len(data["violations"])
    return json.dumps(data, separators=(",", ":"))


def _decoded(text: str) -> CheckReport:
    data = json.loads(text)
    violations = tuple(Violation(**found) for found in data["violations"])
    return CheckReport(**{**data, "mode": Mode(data["mode"]), "violations": violations})


class _LeftOpen:
    """What this process must finish and close when it exits."""

    def __init__(self) -> None:
        self.guards: set[Guard] = set()
        self.runs: set[SinkCheck] = set()

    def close(self) -> None:
        try:
            for run in list(self.runs):
                run.finish()  # an iteration that stopped early: write its summary
        finally:
            for guard in list(self.guards):
                guard.close()  # flushes the audit entries it buffered


_left_open: dict[int, _LeftOpen] = {}  # by pid: a forked child starts with none


def _this_process() -> _LeftOpen:
    pid = os.getpid()
    found = _left_open.get(pid)
    if found is None:
        made = _LeftOpen()
        found = _left_open.setdefault(pid, made)  # one winner, without a lock to fork
        if found is made:
            mp_util.Finalize(None, made.close, exitpriority=EXIT_PRIORITY)
    return found


def _opened(spec: GuardSpec) -> Guard:
    guard = Guard.from_spec(spec)  # once per process, the same one after
    _this_process().guards.add(guard)
    return guard


class _Checks:
    """What both wrappers check with: a spec (and the guard it came from, in the process
    that gave it), the sink, the mode, and the tenant context they were made in."""

    def __init__(self, guard: Guard | GuardSpec, sink: Sink | str, mode: Mode | str) -> None:
        try:
            self.mode = Mode(mode)
        except ValueError:
            modes = ", ".join(m.value for m in Mode)
            raise ConfigError(f"mode must be one of {modes}, not {mode!r}") from None
        self._local: Guard | None = None
        if isinstance(guard, Guard):
            guard.resolve_sink(sink)  # an unknown sink fails here, not in each worker
            self.spec, self._local = guard.spec(), guard
        elif isinstance(guard, GuardSpec):
            self.spec = guard
        else:
            raise ConfigError(f"expected a Guard or guard.spec(), not {type(guard).__name__}")
        self.sink = sink
        self.tenant = current_tenant()
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_local": None}  # a Guard never crosses processes

    def guard(self) -> Guard:
        """This process's guard: the one given, in the process that gave it; else the
        one opened from the spec."""
        if self._local is not None and self._pid == os.getpid():
            return self._local
        return _opened(self.spec)

    def start(self) -> SinkCheck:
        """Begin a check in this process's guard; end it with :meth:`finish`."""
        guard = self.guard()
        with guard.tenant_context(self.tenant) if self.tenant else nullcontext():
            run = guard.checks.start(self.sink, mode=self.mode)
        if guard is not self._local:
            _this_process().runs.add(run)  # finished at exit if still open then
        return run

    @staticmethod
    def finish(run: SinkCheck) -> CheckReport:
        """End a check begun by :meth:`start` (idempotent)."""
        _this_process().runs.discard(run)
        return run.finish()

    def refused(self, report: CheckReport) -> IsolationViolation:
        """The error for a refusal: in a worker, one the main process can rebuild, raised
        once the refusal is written (the main process may end the worker before its
        audit log's next flush)."""
        if get_worker_info() is None:
            return IsolationViolation(report)
        self.guard().audit.flush()
        return WorkerViolation(report)


class GuardedDataset(Dataset[T]):
    """A map-style dataset whose records are checked at ``sink`` as they load.

    Args:
        dataset: the records by index (a ``Dataset`` with ``__len__``, a list, ...);
            its ``__getitems__`` is used for batches when it has one.
        guard: a :class:`Guard` or ``guard.spec()``; workers get only the spec.
        sink: the sink the records are for (a kind such as ``shared-training`` or
            ``tenant-fine-tune:acme``, a configured name, or a ``Sink``).
        mode: ``enforce`` (default, whatever the sink's configured mode) or ``observe``.

    Raises:
        ConfigError: ``filter`` (see the module docstring), a bad mode, or, with a
            guard, a sink it does not know.
    """

    def __init__(
        self,
        dataset: MapDataset[T],
        guard: Guard | GuardSpec,
        sink: Sink | str,
        *,
        mode: Mode | str = Mode.ENFORCE,
    ) -> None:
        self.dataset = dataset
        self.checks = _Checks(guard, sink, mode)
        if self.checks.mode is Mode.FILTER:
            raise ConfigError(
                "a map-style dataset cannot drop an index: use mode='enforce', or filter "
                "a stream with GuardedIterableDataset (an IterableDataset to guarded_loader)"
            )

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> T:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[T]:
        """The records at ``indices``, checked as one batch (one check).

        Raises:
            IsolationViolation: in ``enforce`` mode, if any is refused (a
                :class:`WorkerViolation` in a worker); its violations carry dataset
                indices.
        """
        load = getattr(self.dataset, "__getitems__", None)
        records = list(load(indices)) if callable(load) else [self.dataset[i] for i in indices]
        run = self.checks.start()
        try:
            run.decide_many(records)
        finally:
            report = self.checks.finish(run)
        if report.blocked and self.checks.mode is Mode.ENFORCE:
            at = [replace(v, index=indices[v.index]) for v in report.violations]
            raise self.checks.refused(replace(report, violations=tuple(at)))
        return records


class GuardedIterableDataset(IterableDataset[T]):
    """A stream of records checked at ``sink`` as they are yielded.

    Args:
        dataset: the records (an ``IterableDataset``, a list, any re-iterable).
        guard: a :class:`Guard` or ``guard.spec()``; workers get only the spec.
        sink: the sink the records are for (see :class:`GuardedDataset`).
        mode: ``enforce`` (default, whatever the sink's configured mode), ``filter``
            (drop refused records) or ``observe``.
        shard: in worker *k* of *n*, keep records *k*, *k + n*, ... (for a dataset
            that does not split itself among workers).

    Raises:
        ConfigError: a bad mode, or, with a guard, a sink it does not know.
    """

    def __init__(
        self,
        dataset: Iterable[T],
        guard: Guard | GuardSpec,
        sink: Sink | str,
        *,
        mode: Mode | str = Mode.ENFORCE,
        shard: bool = False,
    ) -> None:
        self.dataset = dataset
        self.checks = _Checks(guard, sink, mode)
        self.shard = shard

    def __iter__(self) -> Iterator[T]:
        """Yield the records that pass, one check for the whole iteration.

        Raises:
            IsolationViolation: in ``enforce`` mode, at the first refused record (a
                :class:`WorkerViolation` in a worker); violations carry positions in
                the stream this process checked.
        """
        run = self.checks.start()
        try:
            for record in self._records():
                if run.admit(record):
                    yield record
        except IsolationViolation as exc:
            if isinstance(exc, WorkerViolation) or get_worker_info() is None:
                raise
            raise self.checks.refused(exc.report) from None
        finally:
            self.checks.finish(run)

    def _records(self) -> Iterator[T]:
        records = iter(self.dataset)
        info = get_worker_info()
        if not self.shard or info is None:
            return records
        return islice(records, info.id, None, info.num_workers)


def guarded_loader(
    dataset: MapDataset[Any] | IterableDataset[Any],
    guard: Guard | GuardSpec,
    sink: Sink | str,
    *,
    mode: Mode | str = Mode.ENFORCE,
    shard: bool = False,
    **options: Any,
) -> DataLoader[Any]:
    """A ``DataLoader`` over ``dataset`` whose records are checked at ``sink`` where
    they load: an ``IterableDataset`` in a :class:`GuardedIterableDataset`, any other
    in a :class:`GuardedDataset`. Workers get ``guard.spec()``, never the guard.

    Args:
        options: ``DataLoader`` arguments (``batch_size``, ``num_workers``,
            ``multiprocessing_context``, ``collate_fn``, ...).

    Raises:
        ConfigError: as the wrappers raise; ``shard`` for a map-style dataset (its
            sampler splits it among workers).
    """
    wrapped: Dataset[Any]
    if isinstance(dataset, IterableDataset):
        wrapped = GuardedIterableDataset(dataset, guard, sink, mode=mode, shard=shard)
    elif shard:
        raise ConfigError("shard=True is for an IterableDataset: a sampler splits this one")
    else:
        wrapped = GuardedDataset(dataset, guard, sink, mode=mode)
    return DataLoader(wrapped, **options)
