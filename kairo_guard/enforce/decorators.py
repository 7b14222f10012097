"""``@guard.sink(...)``: check a function's data arguments before they reach a sink.

The decorator inspects the function's signature once, at decoration time, and picks a
sync or async wrapper then. At call time each data argument is checked by shape:

* lists, tuples, sets: every record checked before the function runs; ``enforce``
  raises, ``filter`` passes a copy without the refused records, ``observe`` passes all;
* one record (dict, str, bytes, :class:`~kairo_guard.core.types.Sealed`): checked before the
  call; refused raises in ``enforce`` and ``filter`` (there is nothing left to pass);
* a :class:`~kairo_guard.tenancy.datasets.VerifiedDataset` (``guard.open_dataset``): its
  manifest, tenant, agreement and every record checked before the function runs;
* other iterables (generators, datasets streamed lazily) and async iterables: wrapped so
  each record is checked as the function consumes it.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from kairo_guard.core.exceptions import ConfigError, IsolationViolation
from kairo_guard.core.report import CheckReport
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import Mode, Outcome, Sealed
from kairo_guard.tenancy.datasets import VerifiedDataset, admit_dataset

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger("kairo_guard")

_SINGLE = (str, bytes, bytearray, Mapping, Sealed)
_EAGER = (list, tuple, set, frozenset)


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


def _check_eager(
    guard: Guard, sink: Sink, value: Any, report_to: Callable[[CheckReport], None]
) -> Any:
    single = isinstance(value, _SINGLE) or not isinstance(value, Iterable)
    items = (value,) if single else tuple(value)
    run = guard.start_check(sink)
    keep = [item for item in items if run.decide(item).outcome is Outcome.ALLOW]
    report = run.finish()
    report_to(report)
    if report.ok or sink.mode is Mode.OBSERVE:
        return value
    if sink.mode is Mode.ENFORCE or single:
        raise IsolationViolation(report)
    return type(value)(keep)


def _guard_value(
    guard: Guard, sink: Sink, value: Any, report_to: Callable[[CheckReport], None]
) -> Any:
    if isinstance(value, VerifiedDataset):  # decided whole, before the function runs
        return admit_dataset(guard, sink, value, report_to)
    if isinstance(value, (*_SINGLE, *_EAGER)) or not isinstance(value, Iterable | AsyncIterable):
        return _check_eager(guard, sink, value, report_to)
    if isinstance(value, AsyncIterable):
        return guard.achecked(value, sink=sink, on_report=report_to)
    return guard.checked(value, sink=sink, on_report=report_to)


def guard_sink(
    guard: Guard,
    sink: Sink,
    data: str | Iterable[str] | None,
    on_report: Callable[[CheckReport], None] | None = None,
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
                        guard, sink, bound.arguments[name], report_to
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
