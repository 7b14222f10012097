"""A DataFrame or an Arrow table at a sink is records, one a row (iterating one would
give its column names): rows pass or block as the same records would as dicts."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from kairo_guard import Guard
from kairo_guard.core.types import SEAL_FIELD

SHARED = "shared-training"


def _records(guard: Guard) -> list[dict[str, Any]]:
    public = [
        {"id": i, "text": f"Public note {i}: restart the worker after upgrades."} for i in range(3)
    ]
    seals = guard.vetting.vet(public, source="docs")
    assert all(isinstance(s, str) for s in seals)
    vetted = [{**r, SEAL_FIELD: s} for r, s in zip(public, seals, strict=True)]
    customer = guard.label_record(
        {"id": 9, "text": "Acme plan: hire twelve engineers."}, tenant="acme"
    )
    return [vetted[0], customer, vetted[1], vetted[2]]


@pytest.mark.parametrize("make", [pd.DataFrame, pa.Table.from_pylist], ids=["pandas", "arrow"])
def test_a_table_is_checked_row_by_row(guard: Guard, make: Any) -> None:
    table = make(_records(guard))
    report = guard.check(table, sink=SHARED, mode="filter")
    assert report.total == 4
    assert [(v.index, v.rule) for v in report.violations] == [(1, "class.customer-content-shared")]


@pytest.mark.parametrize("make", [pd.DataFrame, pa.Table.from_pylist], ids=["pandas", "arrow"])
def test_a_filtering_sink_gets_a_table_of_the_rows_that_passed(guard: Guard, make: Any) -> None:
    table = make(_records(guard))

    @guard.sink("router", kind=SHARED, mode="filter")
    def train(rows: Any) -> Any:
        return rows

    kept = train(table)
    assert type(kept) is type(table)
    ids = kept["id"].tolist() if isinstance(kept, pd.DataFrame) else kept.column("id").to_pylist()
    assert ids == [0, 1, 2]


def test_a_projection_without_the_seal_column_blocks_every_row(guard: Guard) -> None:
    table = pa.Table.from_pylist(_records(guard)).drop_columns([SEAL_FIELD])
    report = guard.check(table, sink=SHARED, mode="filter")
    assert report.by_rule == {"seal.missing": 4}


def test_a_row_whose_values_changed_type_in_the_table_no_longer_matches_its_seal(
    guard: Guard,
) -> None:
    rows = _records(guard)
    rows[2] = {k: v for k, v in rows[2].items() if k != "id"}  # a missing key: NaN in pandas
    frame = pd.DataFrame(rows)  # ids become floats, one of them NaN
    report = guard.check(frame, sink=SHARED, mode="filter")
    assert report.allowed == 0
    assert set(report.by_rule) <= {
        "seal.digest-mismatch",
        "class.customer-content-shared",
        "content.unencodable",
    }
