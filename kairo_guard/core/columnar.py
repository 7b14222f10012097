"""Seals through columnar formats: the canonical content travels beside the seal.

A seal vouches for the canonical JSON bytes of a record's content. Arrow, Parquet,
pandas, Hugging Face ``datasets`` and Ray Data do not keep those bytes: a table unifies
its rows' keys (a key one record lacks becomes a null in its row), a pandas column of
integers with a gap becomes floats, a string that looks like a time may come back as a
timestamp. A row read back from them no longer hashes to its seal's digest.

So a record bound for a columnar format carries its canonical content bytes in one
more column, :data:`CANONICAL_FIELD` (:func:`with_canonical` adds it). A sink then
decides on those bytes (the seal is verified against them, the content checks read
them), and accepts the row only if every value it holds agrees with them up to what
those conversions do (:func:`agrees`): a null where the content has no such key or a
null, a number equal to the content's (a boolean as 0 or 1: Arrow turns a column mixing
them into numbers), a timestamp equal to the content's ISO 8601
string, lists and structs element by element. A row that disagrees is decided on its
own values, which do not match its seal, so it is refused. A column the content has but
the table dropped (a projection) is not a disagreement: what is left is part of what was
sealed. A table without the seal column holds unsealed records, refused at shared sinks.

Chosen over verifying before conversion because the check then happens where the data
is used, on every worker, after every conversion; the cost is the bytes of the content
a second time, compressed well by Parquet.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, NamedTuple

import orjson

from kairo_guard.core.content import RawJSON, canonical_json
from kairo_guard.core.exceptions import ContentError
from kairo_guard.core.types import SEAL_FIELD

CANONICAL_FIELD = "_kairo_canonical"
"""The column that carries a record's canonical content bytes beside its seal."""
_SKIP = frozenset({SEAL_FIELD, CANONICAL_FIELD})
_MAX_DEPTH = 64


def with_canonical(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` with its canonical content bytes under
    :data:`CANONICAL_FIELD` (the content: the record without its seal and without a
    previous copy of those bytes).

    Raises:
        ContentError: if the content has no canonical JSON encoding.
    """
    content = {k: v for k, v in record.items() if k not in _SKIP}
    return {**content, **_seal_of(record), CANONICAL_FIELD: canonical_json(content)}


def _seal_of(record: Mapping[str, Any]) -> dict[str, Any]:
    return {SEAL_FIELD: record[SEAL_FIELD]} if SEAL_FIELD in record else {}


def columnar_content(record: Mapping[str, Any]) -> object:
    """The content a row of a columnar format stands for: its canonical content bytes
    (as :class:`~kairo_guard.core.content.RawJSON`: hashed as they are, parsed only if
    a content check reads them), when it carries them and every value it holds agrees
    with them (see the module docstring); otherwise the row as it is (without the
    bytes), which then does not match its seal."""
    raw = record.get(CANONICAL_FIELD)
    row = {k: v for k, v in record.items() if k != CANONICAL_FIELD}
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not isinstance(raw, bytes | bytearray | memoryview):
        return row
    raw = bytes(raw)
    if _encodes_as(row, raw):  # the common case: the row holds exactly the content
        return RawJSON(raw)
    try:
        content = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return row
    if type(content) is not dict or not agrees(row, content):
        return row
    return RawJSON(raw)


def _encodes_as(row: dict[str, Any], raw: bytes) -> bool:
    try:
        return canonical_json({k: v for k, v in row.items() if k != SEAL_FIELD}) == raw
    except ContentError:
        return False


def agrees(row: Mapping[str, Any], content: Mapping[str, Any], depth: int = 0) -> bool:
    """Whether every value of ``row`` (its seal and canonical bytes aside, at its top
    level only: further down they are content) is the value ``content`` holds under that
    key, up to the conversions of columnar formats; a key ``content`` lacks must hold a
    null."""
    if depth > _MAX_DEPTH:
        return False
    for key, value in row.items():
        if depth == 0 and key in _SKIP:
            continue
        if key in content:
            if not same(value, content[key], depth + 1):
                return False
        elif not _null(value):
            return False
    return True


def same(value: Any, expected: Any, depth: int = 0) -> bool:
    """Whether ``value``, as a columnar format gives it back, is ``expected`` (a value
    of canonical JSON content)."""
    if depth > _MAX_DEPTH:
        return False
    if expected is None:
        return _null(value)
    if isinstance(expected, bool | int | float):  # a column mixing the two holds numbers
        return (_is_bool(value) or _number(value)) and float(value) == float(expected)
    if isinstance(expected, str):
        return _same_text(value, expected)
    if isinstance(expected, list):
        items = _items(value)
        return (
            items is not None
            and len(items) == len(expected)
            and all(same(v, e, depth + 1) for v, e in zip(items, expected, strict=True))
        )
    if isinstance(expected, dict):
        return type(value) is dict and agrees(value, expected, depth + 1)
    return False


# A row's values are recognised by their exact types, never by name or by subclass: a
# class named NAType, or a float subclass with a slot, would carry text no check reads.
def _null(value: Any) -> bool:
    if value is None:
        return True
    kind = type(value)
    if kind is float or kind in _kinds().floats:
        return math.isnan(value)
    pandas = sys.modules.get("pandas")  # a value is pandas' only if pandas is imported
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def _is_bool(value: Any) -> bool:
    return type(value) is bool or type(value) in _kinds().bools


def _number(value: Any) -> bool:
    kind = type(value)
    return (kind is int or kind is float or kind in _kinds().numbers) and not _null(value)


class _Kinds(NamedTuple):
    """numpy's scalar and array types (empty while numpy is not imported)."""

    floats: frozenset[type] = frozenset()
    numbers: frozenset[type] = frozenset()
    bools: frozenset[type] = frozenset()
    strs: frozenset[type] = frozenset()
    datetime64: Any = None
    ndarray: Any = None


def _kinds() -> _Kinds:
    numpy = sys.modules.get("numpy")  # a value is numpy's only if numpy is imported
    return _NO_KINDS if numpy is None else _numpy_kinds(numpy)


@functools.cache
def _numpy_kinds(numpy: Any) -> _Kinds:
    floats = frozenset({numpy.float16, numpy.float32, numpy.float64, numpy.longdouble})
    ints = frozenset(
        getattr(numpy, f"{sign}int{bits}") for sign in ("", "u") for bits in (8, 16, 32, 64)
    )
    bools, strs = frozenset({numpy.bool_}), frozenset({numpy.str_})
    return _Kinds(floats, floats | ints, bools, strs, numpy.datetime64, numpy.ndarray)


_NO_KINDS = _Kinds()


def _same_text(value: Any, expected: str) -> bool:
    if type(value) is str or type(value) in _kinds().strs:
        return bool(value == expected)
    if _is_time(value):
        return _same_time(value, expected)
    if type(value) is _kinds().datetime64:  # numpy: naive, as UTC
        return _same_time(value.astype("datetime64[us]").item(), expected)
    return False


def _is_time(value: Any) -> bool:
    kind = type(value)
    if kind is datetime or kind is date:
        return True
    pandas = sys.modules.get("pandas")
    return pandas is not None and kind is pandas.Timestamp


def _same_time(value: date, expected: str) -> bool:
    try:
        parsed = datetime.fromisoformat(expected.replace("Z", "+00:00"))
    except ValueError:
        return False
    if not isinstance(value, datetime):
        return parsed.time() == datetime.min.time() and parsed.date() == value
    if (value.tzinfo is None) != (parsed.tzinfo is None):
        return False
    return value == parsed


def _items(value: Any) -> list[Any] | None:
    if type(value) is list or type(value) is tuple:
        return list(value)
    if type(value) is _kinds().ndarray:
        items = value.tolist()
        return items if isinstance(items, list) else None
    return None
