"""The two walks of a record (texts alone for the net, texts with paths for reasons)
read the same strings in the same order, and what they read is what the digest covers:
the strings of the record's canonical JSON."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairo_guard.core.content import RawJSON, canonical_json, content_digest
from kairo_guard.core.exceptions import ContentError
from kairo_guard.core.types import SEAL_FIELD
from kairo_guard.detect.fields import json_path, record_fields, record_strings

pytestmark = pytest.mark.storeless  # opens no state store: runs once, in the main pass


@dataclasses.dataclass
class _Pair:
    text: Any
    _note: Any


class _Kind(enum.Enum):
    TEXT = "an enum's text"
    PAIR = ("left", 2)


class _Level(enum.IntEnum):
    LOW = 1


class _Str(str):
    def __str__(self) -> str:
        return "not what is stored"


class _Dict(dict[Any, Any]):
    def __iter__(self) -> Any:
        return iter(())


class _List(list[Any]):
    def __reversed__(self) -> Any:
        return iter(())


class _Tuple(tuple[Any, ...]):
    __slots__ = ()


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)  # valid UTF-8
_leaves = st.one_of(
    _text,
    _text.map(_Str),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.sampled_from([*_Kind, *_Level]),
    st.uuids(),
    st.datetimes(),
    # outside the definition: both the digest and the reader refuse them
    st.binary(max_size=4),
    st.frozensets(_text, max_size=2),
    st.builds(object),
)
_keys = st.one_of(_text, st.just(SEAL_FIELD), st.integers(-3, 3), _text.map(_Str))


def _nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.lists(inner, max_size=3).map(_Tuple),
        st.lists(inner, max_size=3).map(_List),
        st.dictionaries(_keys, inner, max_size=4),
        st.dictionaries(_keys, inner, max_size=3).map(_Dict),
        st.builds(_Pair, inner, inner),
    )


_records = st.recursive(_leaves, _nest, max_leaves=25)


def _json_strings(value: Any, root: bool = True) -> list[str]:
    """The strings of parsed JSON, in the walks' order: the reference."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _json_strings(item, False)]
    if isinstance(value, dict):
        keys = sorted(k for k in value if not (root and k == SEAL_FIELD))
        return [s for k in keys for s in [k, *_json_strings(value[k], False)]]
    return []


def _read(walk: Any, record: Any) -> Any:
    try:
        return walk(record)
    except ContentError:
        return ContentError


@settings(max_examples=400, deadline=None)
@given(_records)
def test_when_any_record_is_walked_then_both_walks_agree(record: Any) -> None:
    fields = _read(record_fields, record)
    texts = _read(record_strings, record)
    assert fields is texts is ContentError or [f.text for f in fields] == texts


@settings(max_examples=400, deadline=None)
@given(_records.filter(lambda r: not isinstance(r, bytes)))  # bytes alone: digested raw
def test_when_any_record_is_read_then_its_text_is_the_text_of_what_is_digested(
    record: Any,
) -> None:
    texts = _read(record_strings, record)
    encoded = _read(canonical_json, record)
    if encoded is ContentError:
        assert texts is ContentError
    else:
        assert texts == _json_strings(orjson.loads(encoded))


def test_when_a_record_is_raw_json_then_both_walks_read_inside_it() -> None:
    # canonical bytes, as a byte-verified line holds (other JSON text is refused:
    # tests/detect/test_raw_json_reading.py)
    record = RawJSON(b'{"a":{"y":["x"],"z":"inner"},"b":"outer"}')
    assert record_strings(record) == ["a", "y", "x", "z", "inner", "b", "outer"]
    assert [f.text for f in record_fields(record)] == record_strings(record)
    paths = {f.text: json_path(f.path) for f in record_fields(record) if not f.is_key}
    assert paths["inner"] == "$.a.z"
    assert paths["outer"] == "$.b"


def test_when_a_dataclass_or_enum_is_read_then_paths_name_its_fields() -> None:
    record = {"pair": _Pair(_Kind.PAIR, "hidden")}
    fields = record_fields(record)
    assert [f.text for f in fields] == ["pair", "_note", "hidden", "text", "left"]
    assert json_path(fields[2].path) == "$.pair._note"
    assert json_path(fields[4].path) == "$.pair.text[0]"


@pytest.mark.parametrize(
    "content", [b"caf\xc3\xa9 \xff", bytearray(b"caf\xc3\xa9"), memoryview(b"caf\xc3\xa9")]
)
def test_when_bytes_are_the_whole_content_then_they_are_read_as_utf8(content: Any) -> None:
    text = bytes(content).decode("utf-8", errors="replace")
    assert record_strings(content) == [text]
    assert [f.text for f in record_fields(content)] == [text]
    assert content_digest(content) == content_digest(bytes(content))


def test_when_a_memoryview_is_not_contiguous_or_not_bytes_then_it_is_its_bytes() -> None:
    wide = memoryview(bytearray(b"abcdefgh")).cast("I")
    assert content_digest(wide) == content_digest(b"abcdefgh")
    assert record_strings(wide) == ["abcdefgh"]
    assert content_digest(memoryview(b"abcdefgh")[::2]) == content_digest(b"aceg")


@settings(max_examples=1500, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "_kairo", "Z", "é", ""]),
        st.one_of(
            st.text(max_size=5),
            st.integers(),
            st.floats(allow_nan=False),
            st.booleans(),
            st.none(),
            st.lists(st.text(max_size=3), max_size=2),
            st.dictionaries(st.sampled_from(["_kairo", "k"]), st.text(max_size=3), max_size=2),
        ),
        max_size=5,
    )
)
def test_a_flat_record_is_read_in_the_order_the_walk_reads_it(record: dict[str, Any]) -> None:
    # records of scalar values are read in one loop; the walk (with paths) is the
    # specification: keys in order, each before its value, the root seal field skipped
    assert record_strings(record) == [field.text for field in record_fields(record)]
