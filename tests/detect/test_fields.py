"""The two walks of a record (texts alone for the net, texts with paths for reasons)
read the same strings in the same order."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kairo_guard.core.content import RawJSON
from kairo_guard.core.types import SEAL_FIELD
from kairo_guard.detect.fields import json_path, record_fields, record_strings

_raw = st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3).map(
    lambda d: RawJSON(orjson.dumps(d))
)
_leaves = st.one_of(
    st.text(max_size=8),
    st.binary(max_size=8),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    _raw,
)
_keys = st.one_of(st.text(max_size=6), st.just(SEAL_FIELD), st.integers(-3, 3))
_records = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(_keys, inner, max_size=4),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_records)
def test_when_any_record_is_walked_then_both_walks_agree(record: Any) -> None:
    fields = record_fields(record)
    assert [f.text for f in fields] == record_strings(record)


def test_when_a_record_holds_raw_json_then_both_walks_read_inside_it() -> None:
    record = {"a": RawJSON(b'{"z": "inner", "y": ["x"]}'), "b": "outer"}
    assert record_strings(record) == ["a", "y", "x", "z", "inner", "b", "outer"]
    assert [f.text for f in record_fields(record)] == record_strings(record)
    paths = {f.text: json_path(f.path) for f in record_fields(record) if not f.is_key}
    assert paths["inner"] == "$.a.z"
    assert paths["outer"] == "$.b"
