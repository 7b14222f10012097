"""One record or many: the same answer at check(), checked() and the sink decorator."""

from __future__ import annotations

from typing import Any

import pytest
from kg_testing import sealed_record

from kairo_guard import Guard, IsolationViolation, Sealed
from kairo_guard.enforce.shapes import Shape, records_of, shape_of


class MapStyle:
    """The shape of a PyTorch or Hugging Face map-style dataset: len and index only."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Any:
        self.reads.append(index)
        return self.rows[index]


async def _agen() -> Any:
    yield {"a": 1}


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ({"text": "one"}, Shape.SINGLE),
        ("text", Shape.SINGLE),
        (b"bytes", Shape.SINGLE),
        (bytearray(b"x"), Shape.SINGLE),
        (memoryview(b"view"), Shape.SINGLE),
        (Sealed({"t": 1}, "seal"), Shape.SINGLE),
        (42, Shape.SINGLE),
        ([{"a": 1}], Shape.HELD),
        (({"a": 1},), Shape.HELD),
        (frozenset({"a"}), Shape.HELD),
        (iter([{"a": 1}]), Shape.STREAM),
        (MapStyle([{"a": 1}]), Shape.INDEXED),
    ],
)
def test_shape_of_each_kind_of_value(value: object, shape: Shape) -> None:
    assert shape_of(value) is shape


def test_when_a_value_is_an_async_iterable_then_its_shape_says_so() -> None:
    gen = _agen()
    try:
        assert shape_of(gen) is Shape.ASYNC_STREAM
        with pytest.raises(TypeError, match="achecked"):
            records_of(gen)
    finally:
        gen.aclose().close()


def test_when_a_map_style_dataset_is_read_then_every_index_is_read_once_in_order() -> None:
    data = MapStyle([{"i": 0}, {"i": 1}, {"i": 2}])
    assert list(records_of(data)) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert data.reads == [0, 1, 2]


def _rows(guard: Guard) -> list[dict[str, Any]]:
    return [
        sealed_record(guard, {"text": "public 1"}, data_class="operator_public"),
        guard.label_record({"text": "acme secret"}, tenant="acme"),
        sealed_record(guard, {"text": "public 2"}, data_class="operator_public"),
    ]


def test_when_a_map_style_dataset_reaches_check_then_each_record_is_decided(
    guard: Guard,
) -> None:
    report = guard.check(MapStyle(_rows(guard)), sink="shared-training")
    assert (report.total, report.allowed, report.blocked) == (3, 2, 1)
    assert [v.index for v in report.violations] == [1]


def test_when_a_map_style_dataset_reaches_checked_then_refused_records_are_dropped(
    guard: Guard,
) -> None:
    rows = _rows(guard)
    passed: list[Any] = list(guard.checked(MapStyle(rows), sink="shared-training", mode="filter"))
    assert passed == [rows[0], rows[2]]


@pytest.mark.parametrize(
    ("mode", "outcome"), [("enforce", "raises"), ("filter", "list"), ("observe", "dataset")]
)
def test_when_a_map_style_dataset_reaches_a_decorated_sink_then_it_is_checked_first(
    guard: Guard, mode: str, outcome: str
) -> None:
    rows = _rows(guard)
    data = MapStyle(rows)
    received: list[object] = []

    @guard.sink("router", kind="shared-training", mode=mode)
    def train(dataset: object) -> None:
        received.append(dataset)

    if outcome == "raises":
        with pytest.raises(IsolationViolation):
            train(data)
        assert received == []
    elif outcome == "list":
        train(data)
        assert received == [[rows[0], rows[2]]]
    else:
        train(data)
        assert received == [data]
    assert data.reads == [0, 1, 2]


class Shifty(MapStyle):
    """A dataset whose second read by index returns other records than the first."""

    def __init__(self, first: list[Any], later: list[Any]) -> None:
        super().__init__(first)
        self.later = later

    def __getitem__(self, index: int) -> Any:
        rows = self.rows if len(self.reads) < len(self.rows) else self.later
        self.reads.append(index)
        return rows[index]


@pytest.mark.parametrize("mode", ["enforce", "filter"])
def test_when_every_record_passes_then_the_function_gets_the_records_checked_not_a_reread(
    guard: Guard, mode: str
) -> None:
    public = [r for r in _rows(guard) if "acme" not in str(r["text"])]
    secret = [guard.label_record({"text": "acme secret"}, tenant="acme")] * len(public)
    data = Shifty(public, secret)
    received: list[Any] = []

    @guard.sink("router", kind="shared-training", mode=mode)
    def train(dataset: Any) -> None:
        received.extend(dataset[i] for i in range(len(dataset)))

    train(data)
    assert received == public
    assert len(data.reads) == len(public)  # read once, by the check


def test_when_a_single_dict_reaches_checked_then_it_is_one_record_not_its_keys(
    guard: Guard,
) -> None:
    record = guard.label_record({"text": "acme secret", "more": "x"}, tenant="acme")
    report = guard.check(record, sink="shared-training")
    assert report.total == 1
    assert list(guard.checked([record], sink="shared-training", mode="filter")) == []
