"""One answer to "is this one record or many?", for every entry point of a sink.

A dict, a string, bytes or a :class:`~kairo_guard.core.types.Sealed` pair is one record.
Lists, tuples and sets are many records held in memory (checked before use). A
map-style dataset (``__len__`` and ``__getitem__`` without ``__iter__``: the shape of a
PyTorch ``Dataset``) is many records read by index. A table (a pandas ``DataFrame``, a
PyArrow ``Table`` or ``RecordBatch``: iterating one would give its column names) is many
records, one a row, as a dict of its columns. Anything else iterable is a stream,
checked lazily as it is consumed; any other object is one record (and is refused if it
cannot be read as content).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Iterator, Mapping
from enum import Enum
from typing import Any, Protocol, TypeVar, cast

from kairo_guard.core.types import Sealed

T_co = TypeVar("T_co", covariant=True)


class Indexed(Protocol[T_co]):
    """A map-style dataset: ``len(d)`` records at ``d[0]`` ... ``d[len(d) - 1]``."""

    def __len__(self) -> int:
        """How many records."""
        ...

    def __getitem__(self, index: int, /) -> T_co:
        """The record at ``index``."""
        ...


_SINGLE = (str, bytes, bytearray, memoryview, Mapping, Sealed)
_HELD = (list, tuple, set, frozenset)


class Shape(Enum):
    """How a value passed to a sink holds its records."""

    SINGLE = "single"
    """One record."""
    HELD = "held"
    """Many records already in memory: list, tuple, set."""
    INDEXED = "indexed"
    """A map-style dataset: ``len(value)`` records at ``value[0]`` ... ``value[n - 1]``."""
    TABLE = "table"
    """A DataFrame or an Arrow table: one record a row (:func:`table_rows`)."""
    STREAM = "stream"
    """An iterable read once, lazily."""
    ASYNC_STREAM = "async-stream"
    """An async iterable read once, lazily."""


def shape_of(value: object) -> Shape:
    """Return how ``value`` holds records (see the module docstring)."""
    if isinstance(value, _SINGLE):
        return Shape.SINGLE
    if isinstance(value, _HELD):
        return Shape.HELD
    if _is_table(value):
        return Shape.TABLE
    if isinstance(value, Iterable):
        return Shape.STREAM
    if isinstance(value, AsyncIterable):
        return Shape.ASYNC_STREAM
    if _is_indexed(value):
        return Shape.INDEXED
    return Shape.SINGLE


def records_of(value: object) -> Iterable[object]:
    """Return the records of a synchronous ``value``: itself alone, or what it holds.

    Raises:
        TypeError: for an async iterable (use the async entry points).
    """
    shape = shape_of(value)
    if shape is Shape.SINGLE:
        return (value,)
    if shape is Shape.INDEXED:
        return _indexed(value)
    if shape is Shape.TABLE:
        return table_rows(value)
    if shape is Shape.ASYNC_STREAM:
        raise TypeError("an async iterable of records needs achecked() or an async sink")
    return cast("Iterable[object]", value)  # HELD or STREAM


def _is_table(value: object) -> bool:
    kind = type(value)
    arrow = hasattr(kind, "to_pylist") and hasattr(kind, "column_names")
    pandas = hasattr(kind, "to_dict") and hasattr(kind, "itertuples") and hasattr(kind, "columns")
    return arrow or pandas


def table_rows(value: Any) -> list[dict[str, Any]]:
    """The rows of a table as records: ``{column: value}`` each, the seal (if any)
    under its ``_kairo`` column. Values are what the table holds now (a pandas column of
    integers with a gap holds floats and NaN), so a row whose content changed type does
    not match its seal and is refused."""
    kind = type(value)
    if hasattr(kind, "to_pylist"):
        rows: list[dict[str, Any]] = value.to_pylist()
        return rows
    return cast("list[dict[str, Any]]", value.to_dict(orient="records"))


def rebuilt_table(value: Any, rows: list[Any]) -> Any:
    """A table of the same kind as ``value`` holding ``rows`` (the ones that passed)."""
    kind = type(value)
    if hasattr(kind, "from_pylist"):
        return kind.from_pylist(rows, schema=value.schema)
    return kind(rows, columns=value.columns)


def _is_indexed(value: object) -> bool:
    kind = type(value)
    return hasattr(kind, "__len__") and hasattr(kind, "__getitem__")


def _indexed(value: Any) -> Iterator[object]:
    # len() once, up front: a dataset that grows while it is read is read as it was
    for i in range(len(value)):
        yield value[i]
