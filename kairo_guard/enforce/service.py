"""The sink-check service: resolve a sink, then decide records for it.

Every entry point (``check``, ``checked``, ``achecked``, ``start``, the ``sink``
decorator, the CLI's ``scan``) names its sink the same way (:meth:`SinkChecks.resolve`):
a :class:`~kairo_guard.core.sinks.Sink`; a sink name declared in the config; a kind
(``shared-training``, ``tenant-fine-tune:acme``), which names a sink of that kind; or any
name with ``kind=`` (and ``tenant=``) for a sink the config does not declare.

Containers that must be decided whole (a signed tenant dataset) register a
:class:`BatchAdmission` for their type; they are never read record by record here.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from kairo_guard.core import context
from kairo_guard.core.exceptions import ConfigError
from kairo_guard.core.report import CheckReport
from kairo_guard.core.sinks import Sink, make_sink, parse_kind
from kairo_guard.core.types import Mode, SinkKind, TenantId
from kairo_guard.enforce.check import CheckContext, SinkCheck
from kairo_guard.enforce.shapes import Indexed, records_of

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_KINDS = tuple(k.value for k in SinkKind)
CHECK_BATCH = 1024
"""Records :meth:`SinkChecks.check` decides at once (one fingerprint lookup for them)."""

ReportCallback = Callable[[CheckReport], None]
"""Receives the report of a check when it finishes."""


class BatchAdmission(Protocol):
    """How a container that is decided whole (a signed dataset) meets a sink."""

    def check(self, value: Any, sink: Sink, mode: Mode | None) -> CheckReport:
        """Decide ``value`` for ``sink``; return the report, never raising on blocks."""
        ...

    def admit(self, value: Any, sink: Sink, report_to: ReportCallback) -> Any:
        """Return what may pass (``value`` or a part of it).

        Raises:
            IsolationViolation: when the sink's mode refuses it.
        """
        ...


class SinkChecks:
    """Resolves sinks and decides records for them; what the Guard's checks delegate to.

    Args:
        ctx: what every check of the guard shares (codec, policy, audit, net, ...).
        configured: sinks declared in the config, by name.
        default_mode: the mode of a sink that names none.
        batches: a :class:`BatchAdmission` per container type decided whole.
    """

    def __init__(
        self,
        ctx: CheckContext,
        *,
        configured: Mapping[str, Sink],
        default_mode: Mode,
        batches: Mapping[type, BatchAdmission] | None = None,
    ) -> None:
        self.context = ctx
        """What every check of the guard shares."""
        self._configured = configured
        self._default_mode = default_mode
        self._batches = dict(batches or {})

    def resolve(
        self,
        sink: Sink | str,
        *,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
    ) -> Sink:
        """Return the :class:`Sink` that ``sink`` names (see the module docstring).

        Raises:
            ConfigError: an unknown name without a kind, a bad kind, or a kind that
                contradicts the configured one.
        """
        if isinstance(sink, Sink):
            if kind is not None and make_sink(sink.name, kind, tenant=tenant).label != sink.label:
                raise ConfigError(f"sink {sink.name!r} is {sink.label}, not {kind}")
            return sink if mode is None else _with_mode(sink, mode)
        configured = self._configured.get(sink)
        if configured is not None:
            if kind is not None and make_sink(sink, kind, tenant=tenant).label != configured.label:
                raise ConfigError(f"sink {sink!r} is configured as {configured.label}, not {kind}")
            return configured if mode is None else _with_mode(configured, mode)
        if kind is None:
            kind, tenant = _kind_named_by(sink, tenant)
        return make_sink(sink, kind, tenant=tenant, mode=mode or self._default_mode)

    def start(
        self,
        sink: Sink | str,
        *,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
    ) -> SinkCheck:
        """Begin a check of records one at a time (what the others and the CLI build on)."""
        resolved = self.resolve(sink, kind=kind, tenant=tenant)
        chosen = Mode(mode) if mode else resolved.mode
        return SinkCheck(self.context, resolved, chosen, context.current_tenant())

    def check(
        self,
        records: object,
        *,
        sink: Sink | str,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
    ) -> CheckReport:
        """Decide every record of ``records`` for ``sink``; never raises on blocks."""
        batch = self.batch_admission(records)
        if batch is not None:
            resolved = self.resolve(sink, kind=kind, tenant=tenant)
            return batch.check(records, resolved, Mode(mode) if mode else None)
        run = self.start(sink, kind=kind, tenant=tenant, mode=mode)
        run.keep_for_recall()  # the records are the caller's: none leaves before the end
        items = iter(records_of(records))
        while chunk := list(islice(items, CHECK_BATCH)):
            run.decide_many(chunk)  # the fingerprint net: one lookup a chunk
        run.recall()  # none of them has left: later evidence blocks earlier records too
        return run.finish()

    def checked(
        self,
        records: Iterable[T] | Indexed[T],
        *,
        sink: Sink | str,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
        on_report: ReportCallback | None = None,
    ) -> Iterator[T]:
        """Yield the records that may pass, each checked as it is consumed."""
        batch = self.batch_admission(records)
        if batch is not None:
            resolved = self.resolve(sink, kind=kind, tenant=tenant, mode=mode)
            return iter(batch.admit(records, resolved, on_report or _ignore))
        run = self.start(sink, kind=kind, tenant=tenant, mode=mode)
        return _checked_iter(run, cast("Iterable[T]", records_of(records)), on_report)

    def achecked(
        self,
        records: AsyncIterable[T],
        *,
        sink: Sink | str,
        kind: SinkKind | str | None = None,
        tenant: TenantId | None = None,
        mode: Mode | str | None = None,
        on_report: ReportCallback | None = None,
    ) -> AsyncIterator[T]:
        """Async variant of :meth:`checked` for async iterables."""
        run = self.start(sink, kind=kind, tenant=tenant, mode=mode)
        return _achecked_iter(run, records, on_report)

    def register(self, kind: type, admission: BatchAdmission) -> None:
        """Decide every ``kind`` value whole through ``admission`` from now on."""
        self._batches[kind] = admission

    def batch_admission(self, value: object) -> BatchAdmission | None:
        """Return the admission of a container decided whole, or None."""
        for kind, admission in self._batches.items():
            if isinstance(value, kind):
                return admission
        return None


def _kind_named_by(name: str, tenant: TenantId | None) -> tuple[SinkKind, TenantId | None]:
    if name.partition(":")[0] not in _KINDS:
        raise ConfigError(
            f"unknown sink {name!r}: not declared in the config and not a kind "
            f"({', '.join(_KINDS)}); pass kind=... or declare [sinks.{name}] in "
            "kairo-guard.toml"
        )
    return parse_kind(name, tenant)


def _with_mode(sink: Sink, mode: Mode | str) -> Sink:
    return make_sink(sink.name, sink.kind, tenant=sink.tenant, mode=mode)


def _ignore(report: CheckReport) -> None:
    """A report callback that keeps nothing."""


def _checked_iter(
    run: SinkCheck, records: Iterable[T], on_report: ReportCallback | None
) -> Iterator[T]:
    try:
        for item in records:
            if run.admit(item):
                yield item
    finally:
        _finish(run, on_report)


async def _achecked_iter(
    run: SinkCheck, records: AsyncIterable[T], on_report: ReportCallback | None
) -> AsyncIterator[T]:
    try:
        async for item in records:
            if run.admit(item):
                yield item
    finally:
        _finish(run, on_report)


def _finish(run: SinkCheck, on_report: ReportCallback | None) -> None:
    report = run.finish()
    if on_report is not None:
        on_report(report)
