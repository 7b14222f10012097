"""Seals through Arrow, pandas and Parquet (real pyarrow and pandas): a round trip that
unifies keys into nullable columns, turns integers with a gap into floats and re-reads
times as timestamps still verifies, because the canonical content travels beside the
seal; a row changed in any way, canonical bytes swapped or forged, and a projection
that drops the seal column are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus import prose
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kairo_guard import CANONICAL_FIELD, SEAL_FIELD, Guard, IsolationViolation, with_canonical
from kairo_guard.core.columnar import columnar_content
from kairo_guard.core.content import RawJSON
from kairo_guard.integrations.arrow import (
    DROPPED_SEAL_RULE,
    check_parquet,
    check_table,
    manifest_of,
    sealed_table,
    write_parquet,
)

FINE_TUNE = "tenant-fine-tune:acme"
SHARED = "shared-training"


def _records(guard: Guard) -> list[dict[str, Any]]:
    """Sealed acme records whose shapes a columnar round trip changes."""
    contents: list[dict[str, Any]] = [
        {"id": 1, "text": "acme ticket one", "score": 3, "meta": {"lang": "en", "tags": ["a"]}},
        {"id": 2, "text": "acme ticket two", "when": "2024-05-01T10:00:00+00:00"},
        {"id": 3, "text": "acme ticket three", "score": None, "flag": True},
        {"id": 4, "text": "acme ticket four", "meta": {"lang": "de"}, "ratio": 0.25},
    ]
    return [guard.label_record(c, tenant="acme") for c in contents]


@pytest.fixture
def acme(guard: Guard) -> Guard:
    guard.grant_agreement("acme", reference="ft-1")
    return guard


def _round_trips(table: pa.Table, tmp_path: Path) -> dict[str, Any]:
    frame = table.to_pandas()
    frame["when"] = pd.to_datetime(frame["when"])  # a time column re-read as timestamps
    pq.write_table(table, tmp_path / "rt.parquet")
    return {
        "arrow": table,
        "pandas": frame,
        "arrow from pandas": pa.Table.from_pandas(frame, preserve_index=False),
        "parquet": pq.read_table(tmp_path / "rt.parquet"),
        "parquet to pandas": pq.read_table(tmp_path / "rt.parquet").to_pandas(),
    }


def test_a_round_trip_through_arrow_pandas_and_parquet_still_verifies(
    acme: Guard, tmp_path: Path
) -> None:
    table = sealed_table(_records(acme))
    assert table.schema.field("score").type == pa.int64()
    for name, value in _round_trips(table, tmp_path).items():
        own = acme.check(value, sink=FINE_TUNE, mode="filter")
        assert (own.allowed, own.blocked) == (4, 0), (name, own.by_rule)
        shared = acme.check(value, sink=SHARED, mode="filter")
        assert shared.by_rule == {"class.customer-content-shared": 4}, name


def test_without_the_canonical_bytes_the_same_round_trip_does_not_verify(
    acme: Guard, tmp_path: Path
) -> None:
    frame = sealed_table(_records(acme)).to_pandas().drop(columns=[CANONICAL_FIELD])
    report = acme.check(frame, sink=FINE_TUNE, mode="filter")
    assert report.allowed == 0  # the rows hold nulls and floats the seals never saw


def _changed(frame: pd.DataFrame, row: int, column: str, value: Any) -> pd.DataFrame:
    copy = frame.copy()
    copy[column] = copy[column].astype(object)
    copy.at[row, column] = value
    return copy


def test_a_row_that_differs_from_its_canonical_bytes_is_refused(acme: Guard) -> None:
    frame = sealed_table(_records(acme)).to_pandas()
    canon = list(frame[CANONICAL_FIELD])
    swapped = frame.copy()
    swapped[CANONICAL_FIELD] = [canon[1], canon[0], *canon[2:]]
    forged = frame.copy()
    forged[CANONICAL_FIELD] = [b'{"id":1}', *canon[1:]]
    cases = {
        "text changed": _changed(frame, 0, "text", "acme ticket one, edited"),
        "a null filled in": _changed(frame, 1, "score", 7),
        "true turned false": _changed(frame, 2, "flag", False),
        "a nested value changed": _changed(frame, 3, "meta", {"lang": "fr", "tags": None}),
        "bytes of another row": swapped,
        "bytes of other content": forged,
    }
    for name, value in cases.items():
        report = acme.check(value, sink=FINE_TUNE, mode="filter")
        assert report.blocked >= 1, name
        assert report.allowed == 4 - report.blocked, name
        assert all(v.rule.startswith(("seal.", "content.")) for v in report.violations), name


def test_a_dropped_column_is_a_projection_but_a_dropped_seal_is_refused(
    acme: Guard, tmp_path: Path
) -> None:
    table = sealed_table(_records(acme))
    projected = table.drop_columns(["meta", "score"])
    assert check_table(acme, projected, sink=FINE_TUNE, mode="enforce") is projected

    unsealed = table.drop_columns([SEAL_FIELD])
    with pytest.raises(IsolationViolation) as caught:
        check_table(acme, unsealed, sink=FINE_TUNE, mode="enforce")
    assert caught.value.report.by_rule == {DROPPED_SEAL_RULE: 4}
    write_parquet(unsealed, tmp_path / "unsealed.parquet")  # keeps the manifest it has
    report = check_parquet(acme, tmp_path / "unsealed.parquet", sink=FINE_TUNE, mode="filter")
    assert report.by_rule == {DROPPED_SEAL_RULE: 4}
    # without a manifest the rows are simply unsealed: refused at a shared sink
    bare = unsealed.replace_schema_metadata(None)
    report = acme.check(bare, sink=SHARED, mode="filter")
    assert report.allowed == 0
    assert set(report.by_rule) <= {"seal.missing", "fingerprint.tenant-content"}


def test_check_table_filters_rows_and_keeps_the_schema(acme: Guard) -> None:
    other = acme.label_record({"id": 9, "text": "globex memo"}, tenant="globex")
    table = sealed_table([*_records(acme), other])
    kept = check_table(acme, table, sink=FINE_TUNE, mode="filter")
    assert kept.schema == table.schema
    assert kept.column("id").to_pylist() == [1, 2, 3, 4]
    frame = check_table(acme, table.to_pandas(), sink=FINE_TUNE, mode="filter")
    assert list(frame["id"]) == [1, 2, 3, 4]
    with pytest.raises(IsolationViolation):
        check_table(acme, table, sink=FINE_TUNE, mode="enforce")


def test_a_parquet_file_is_checked_batch_by_batch_and_only_what_passes_is_written(
    acme: Guard, tmp_path: Path
) -> None:
    secret = prose("arrow-parquet", paragraphs=2)
    acme_rows = [
        acme.label_record({"id": i, "text": f"acme {i}"}, tenant="acme") for i in range(50)
    ]
    globex = acme.label_record({"id": 1000, "text": secret}, tenant="globex")
    rows = [*acme_rows[:20], globex, *acme_rows[20:]]
    source = tmp_path / "mixed.parquet"
    assert write_parquet(rows, source) == 51
    out = tmp_path / "kept.parquet"
    report = check_parquet(acme, source, sink=FINE_TUNE, mode="filter", out=out, batch_rows=8)
    assert (report.allowed, report.blocked) == (50, 1)
    assert [v.index for v in report.violations] == [20]
    kept = pq.read_table(out)
    assert kept.column("id").to_pylist() == list(range(50))
    assert manifest_of(kept.schema) is not None
    again = check_parquet(acme, out, sink=FINE_TUNE, mode="enforce")
    assert again.allowed == 50

    refused = tmp_path / "refused.parquet"
    with pytest.raises(IsolationViolation):
        check_parquet(acme, source, sink=FINE_TUNE, mode="enforce", out=refused, batch_rows=8)
    assert not refused.exists()
    assert not Path(str(refused) + ".partial").exists()


def test_with_canonical_replaces_stale_bytes_and_keeps_the_seal(guard: Guard) -> None:
    record = guard.label_record({"text": "acme"}, tenant="acme")
    stale = {**record, CANONICAL_FIELD: b'{"text":"other"}'}
    fresh = with_canonical(stale)
    assert fresh[CANONICAL_FIELD] == b'{"text":"acme"}'
    assert fresh[SEAL_FIELD] == record[SEAL_FIELD]


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=12),
)
_values = st.one_of(
    _scalars,
    st.lists(st.integers(-1000, 1000), max_size=4),
    st.fixed_dictionaries({}, optional={"a": st.text(max_size=5), "b": st.integers(0, 9)}),
)
_contents = st.lists(
    st.dictionaries(st.sampled_from(["k1", "k2", "k3", "k4"]), _values, min_size=1),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(contents=_contents)
def test_any_json_records_that_arrow_can_hold_agree_with_their_bytes_after_a_round_trip(
    contents: list[dict[str, Any]],
) -> None:
    rows = [{**c, SEAL_FIELD: "kg1.unused"} for c in contents]
    try:
        table = sealed_table(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        assume(False)  # a column mixing types Arrow cannot hold: not a round trip
    for back in (table.to_pylist(), table.to_pandas().to_dict(orient="records")):
        for content, row in zip(contents, back, strict=True):
            found = columnar_content(row)
            assert isinstance(found, RawJSON)  # the canonical bytes: they agree
            assert found.value() == content
