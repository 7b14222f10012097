"""``@guard.sink(...)``: check a function's data arguments before they reach a sink.

The decorator inspects the function's signature once, at decoration time, and picks a
sync or async wrapper then. At call time each data argument is checked by its shape
(:mod:`kairo_guard.enforce.shapes`):

* one record (dict, str, bytes, :class:`~kairo_guard.core.types.Sealed`): checked before
  the call; refused raises in ``enforce`` and ``filter`` (nothing is left to pass);
* lists, tuples, sets: every record checked before the function runs; ``enforce``
  raises, ``filter`` passes a copy without the refused records, ``observe`` passes all;
* a map-style dataset (``__len__``/``__getitem__``): every record read and checked before
  the function runs; the function gets a list of the records that were checked and may
  pass (never the dataset, whose second read could differ); ``enforce`` raises on any
  refusal, ``observe`` passes the dataset;
* a container decided whole (a verified tenant dataset): admitted by its registered
  :class:`~kairo_guard.enforce.service.BatchAdmission` before the function runs;
* other iterables (generators, datasets streamed lazily) and async iterables: wrapped so
  each record is checked as the function consumes it.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, ParamSpec, TypeVar

from kairo_guard.core.exceptions import ConfigError, IsolationViolation
from kairo_guard.core.report import CheckReport
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import Mode, Outcome
from kairo_guard.enforce.service import CHECK_BATCH, ReportCallback, SinkChecks
from kairo_guard.enforce.shapes import Shape, rebuilt_table, records_of, shape_of

P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger("kairo_guard")


def _data_params(func: Callable[..., Any], data: str | Iterable[str] | None) -> tuple[str, ...]:
    params = list(inspect.signature(func).parameters)
    if data is None:
        candidates = [p for p in params if p not in ("self", "cls")]
        if not candidates:
            raise ConfigError(
                f"{func.__qualname__} takes no argument to guard; name one with data="
            )
        return (candidates[0],)
    names = (data,) if isinstance(data, str) else tuple(data)
    missing = [n for n in names if n not in params]
    if missing:
        raise ConfigError(f"{func.__qualname__} has no parameter(s) {missing}; data= names them")
    return names


def _log_report(report: CheckReport) -> None:
    if report.blocked:
        logger.warning(
            "sink %s (%s, %s): %d of %d records refused",
            report.sink,
            report.kind,
            report.mode.value,
            report.blocked,
            report.total,
        )


def _check_before(
    checks: SinkChecks, sink: Sink, value: Any, shape: Shape, report_to: ReportCallback
) -> Any:
    run = checks.start(sink)
    run.keep_for_recall()
    keep: dict[int, Any] = {}  # the records let through, by position in the check
    position = 0
    items = iter(records_of(value))
    while chunk := list(islice(items, CHECK_BATCH)):  # the net: one lookup a chunk
        decided = run.decide_many(chunk)
        for item, d in zip(chunk, decided, strict=True):
            if d.outcome is Outcome.ALLOW:
                keep[position] = item
            position += 1
    for recalled in run.recall():  # all still here: later evidence blocks earlier records
        keep.pop(recalled, None)
    report = run.finish()
    report_to(report)
    if sink.mode is Mode.OBSERVE:
        return value
    if not report.ok and (sink.mode is Mode.ENFORCE or shape is Shape.SINGLE):
        raise IsolationViolation(report)
    if shape is Shape.INDEXED:
        # the records read and checked, not the dataset: a second read by index could
        # return other records than the ones that were checked
        return list(keep.values())
    if shape is Shape.TABLE:
        return value if report.ok else rebuilt_table(value, list(keep.values()))
    return value if report.ok else type(value)(keep.values())


def _guard_value(checks: SinkChecks, sink: Sink, value: Any, report_to: ReportCallback) -> Any:
    batch = checks.batch_admission(value)
    if batch is not None:  # decided whole, before the function runs
        return batch.admit(value, sink, report_to)
    shape = shape_of(value)
    if shape is Shape.ASYNC_STREAM:
        return checks.achecked(value, sink=sink, on_report=report_to)
    if shape is Shape.STREAM:
        return checks.checked(value, sink=sink, on_report=report_to)
    return _check_before(checks, sink, value, shape, report_to)


def guard_sink(
    checks: SinkChecks,
    sink: Sink,
    data: str | Iterable[str] | None,
    on_report: ReportCallback | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Return the decorator behind :meth:`Guard.sink` (see the module docstring)."""

    def report_to(report: CheckReport) -> None:
        _log_report(report)
        if on_report is not None:
            on_report(report)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        names = _data_params(func, data)
        signature = inspect.signature(func)

        def guarded_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()  # a default value is data too
            for name in names:
                if name in bound.arguments:
                    bound.arguments[name] = _guard_value(
                        checks, sink, bound.arguments[name], report_to
                    )
            return bound

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                bound = guarded_args(args, kwargs)
                return await func(*bound.args, **bound.kwargs)

            async_wrapper.__kairo_sink__ = sink  # type: ignore[attr-defined]
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = guarded_args(args, kwargs)
            return func(*bound.args, **bound.kwargs)

        wrapper.__kairo_sink__ = sink  # type: ignore[attr-defined]
        return wrapper

    return decorate
