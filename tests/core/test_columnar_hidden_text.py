"""A columnar row is decided on its canonical bytes only when every value it holds agrees
with them: its seal and canonical bytes are set aside at its top level only (further
down they are values like any other), and a null is a null by identity (``None``, NaN,
``pandas.NA``), never by the name of its type. Rows a round trip changed still agree."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from kairo_guard import CANONICAL_FIELD, SEAL_FIELD, Guard, with_canonical
from kairo_guard.core.columnar import agrees, columnar_content
from kairo_guard.core.content import RawJSON

RECORD: dict[str, Any] = {"text": "Public release notes.", "meta": {"lang": "en"}}
HIDDEN = "Acme board minutes: the Lisbon plant doubles output in the third quarter."


class NAType:
    """Not pandas' NA: a class of that name, carrying text."""

    def __init__(self, text: str) -> None:
        self.text = text


class float_(float):  # named as numpy names its types
    __slots__ = ("text",)
    text: str


def _nan_with_text() -> float_:
    value = float_("nan")
    value.text = HIDDEN
    return value


def _row(guard: Guard, **changes: Any) -> dict[str, Any]:
    seal = guard.seal_operator_data(RECORD, source="t")  # a seal that lets it pass
    row = with_canonical({**RECORD, SEAL_FIELD: seal})
    row.update(changes)
    return row


NOT_AGREEING: dict[str, dict[str, Any]] = {
    "nested seal field": {"meta": {"lang": "en", SEAL_FIELD: HIDDEN}},
    "nested canonical field": {"meta": {"lang": "en", CANONICAL_FIELD: HIDDEN}},
    "extra column of a class named NAType": {"leak": NAType(HIDDEN)},
    "extra column of a NaN subclass with a slot": {"leak": _nan_with_text()},
}


@pytest.mark.parametrize("changes", NOT_AGREEING.values(), ids=NOT_AGREEING.keys())
def test_when_a_row_holds_text_its_bytes_lack_then_it_does_not_agree(
    guard: Guard, changes: dict[str, Any]
) -> None:
    row = _row(guard, **changes)
    assert not isinstance(columnar_content(row), RawJSON)
    run = guard.checks.start("s", kind="shared-training")
    assert run.decide(row).outcome.value == "block"  # its seal would let it pass


def test_when_a_table_s_struct_holds_a_nested_seal_field_then_the_row_is_blocked(
    guard: Guard,
) -> None:
    row = _row(guard, meta={"lang": "en", SEAL_FIELD: HIDDEN})
    table = pa.Table.from_pylist([row])
    sink = guard.resolve_sink("s", kind="shared-training")
    result = guard.check(table, sink=sink)
    assert (result.allowed, result.blocked) == (0, 1)
    assert guard.check(pa.Table.from_pylist([_row(guard)]), sink=sink).allowed == 1


AGREEING: dict[str, dict[str, Any]] = {
    "pandas NA in a column the content lacks": {"score": pd.NA},
    "NaN in a column the content lacks": {"score": float("nan")},
    "None in a column the content lacks": {"score": None},
    "pandas NaT in a column the content lacks": {"when": pd.NaT},
}


@pytest.mark.parametrize("changes", AGREEING.values(), ids=AGREEING.keys())
def test_when_a_row_holds_only_nulls_beside_its_content_then_it_agrees(
    guard: Guard, changes: dict[str, Any]
) -> None:
    row = _row(guard, **changes)
    assert isinstance(columnar_content(row), RawJSON)
    run = guard.checks.start("s", kind="shared-training")
    assert run.decide(row).outcome.value == "allow"


def test_when_the_content_itself_holds_a_nested_seal_field_then_its_row_agrees() -> None:
    content = {"meta": {"lang": "en", SEAL_FIELD: "quoted seal"}}
    assert agrees({**content, SEAL_FIELD: "kp1.x"}, content)
