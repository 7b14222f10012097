"""The digest and the text the net and the PII gate read cover the same content: a
document wrapped in a dataclass, an Enum member or a memoryview is read, and what the
reader cannot read is refused (no seal, blocked at a sink), never digested unread."""

from __future__ import annotations

import dataclasses
import enum
import gzip
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from kg_testing import make_guard, mint_unchecked

from kairo_guard import ContentError, ContentRefused, Guard, Sealed, content_digest
from kairo_guard.detect.fields import record_fields, record_strings

DOC = (
    "Acme board minutes: the Lisbon plant doubles output in the third quarter and forty "
    "engineers move to the battery line under a supplier agreement nobody has seen yet."
)
PII_DOC = (
    "Escalation from Maria Garcia: reach her at maria.garcia@example.com or on "
    "+1 415-555-0132 before the renewal call; card on file 4111 1111 1111 1111."
)


@dataclasses.dataclass
class Doc:
    text: str


@dataclasses.dataclass
class Hidden:
    text: str
    _note: str


class Stored(enum.Enum):
    DOC = DOC
    PII = PII_DOC


class Quiet(dict[str, object]):
    """A dict that shows no members to iteration: they are still stored (and digested)."""

    def __iter__(self) -> Iterator[str]:
        return iter(())


class QuietList(list[object]):
    """A list whose reversed() is empty: its items are still stored (and digested)."""

    def __reversed__(self) -> Iterator[object]:
        return iter(())


WRAPS: dict[str, Callable[[str], object]] = {
    "dataclass": Doc,
    "dataclass in a dict": lambda t: {"doc": Doc(t)},
    "dataclass _ field": lambda t: Hidden("public notes", t),
    "enum member": lambda t: Stored.DOC if t == DOC else Stored.PII,
    "enum member in a list": lambda t: [Stored.DOC if t == DOC else Stored.PII],
    "memoryview": lambda t: memoryview(t.encode()),
    "bytearray": lambda t: bytearray(t.encode()),
    "nested seal member": lambda t: {"doc": {"_kairo": t}},
    "dict subclass": lambda t: {"doc": Quiet(text=t)},
    "list subclass": lambda t: {"doc": QuietList([t])},
}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Guard]:
    """A guard whose fingerprint net holds one of acme's documents."""
    with make_guard(tmp_path / "net", pii_gate=False) as g:
        g.index_content("acme", {"text": DOC})
        yield g


@pytest.mark.parametrize("wrap", WRAPS.values(), ids=WRAPS.keys())
def test_when_a_copy_is_wrapped_then_vetting_finds_the_tenant_s_text(
    net: Guard, wrap: Callable[[str], object]
) -> None:
    with pytest.raises(ContentRefused) as refused:
        net.seal_operator_data(wrap(DOC), source="t")
    assert refused.value.rule == "fingerprint.tenant-content"


@pytest.mark.parametrize("wrap", WRAPS.values(), ids=WRAPS.keys())
def test_when_a_copy_is_wrapped_then_a_shared_sink_blocks_it_whatever_its_seal(
    net: Guard, wrap: Callable[[str], object]
) -> None:
    content = wrap(DOC)
    seal = mint_unchecked(net, content, data_class="operator_public")
    run = net.checks.start("s", kind="shared-training")
    decision = run.decide(Sealed(content, seal))
    assert decision.rule == "fingerprint.tenant-content"


@pytest.mark.parametrize("wrap", WRAPS.values(), ids=WRAPS.keys())
def test_when_pii_is_wrapped_then_the_pii_gate_finds_it(
    pii_guard: Guard, wrap: Callable[[str], object]
) -> None:
    with pytest.raises(ContentRefused) as refused:
        pii_guard.seal_operator_data(wrap(PII_DOC), source="t")
    assert refused.value.rule.startswith("pii.")


def test_when_only_a_dataclass_s_underscore_field_differs_then_the_digests_differ() -> None:
    assert content_digest(Hidden("public", "one")) != content_digest(Hidden("public", "two"))


def test_when_a_dataclass_is_digested_then_it_is_the_object_of_its_fields() -> None:
    assert content_digest(Hidden("a", "b")) == content_digest({"text": "a", "_note": "b"})
    assert record_strings(Hidden("a", "b")) == record_strings({"text": "a", "_note": "b"})


def test_when_an_enum_member_is_digested_then_it_is_its_value() -> None:
    assert content_digest({"x": Stored.DOC}) == content_digest({"x": DOC})
    assert record_strings({"x": Stored.DOC}) == ["x", DOC]


def test_when_a_memoryview_is_digested_and_read_then_it_is_its_bytes() -> None:
    data = DOC.encode()
    assert content_digest(memoryview(data)) == content_digest(data)
    assert content_digest(memoryview(data)[::2]) == content_digest(data[::2])
    assert record_strings(memoryview(data)) == [DOC]


class _Tagged(enum.StrEnum):
    """A str Enum whose text is not its value: what is digested is not what is read."""

    def __new__(cls, value: str, text: str) -> _Tagged:
        member = str.__new__(cls, text)
        member._value_ = value
        return member

    A = ("a", DOC)


def _with_extra_attribute() -> Doc:
    doc = Doc("public notes")
    doc.__dict__["hidden"] = DOC  # not a field: neither its digest nor its text
    return doc


REFUSED: dict[str, object] = {
    "set": {"tags": {DOC, "x"}},
    "frozenset": [frozenset({DOC})],
    "bytes inside a record": {"body": DOC.encode()},
    "non-string key": {1: DOC},
    "object": {"doc": object()},
    "dataclass class": {"doc": Doc},
    "dataclass with an attribute that is not a field": _with_extra_attribute(),
    "str enum whose text is not its value": {"x": _Tagged.A},
    "orjson fragment": {"x": orjson.Fragment(orjson.dumps({"text": DOC}))},
}


@pytest.mark.parametrize("content", REFUSED.values(), ids=REFUSED.keys())
def test_when_the_reader_cannot_read_content_then_it_is_refused(content: object) -> None:
    with pytest.raises(ContentError):
        record_strings(content)
    with pytest.raises(ContentError):
        record_fields(content)


@pytest.mark.parametrize("content", REFUSED.values(), ids=REFUSED.keys())
def test_when_the_reader_cannot_read_content_then_vetting_seals_nothing(
    net: Guard, content: object
) -> None:
    with pytest.raises(ContentError):
        net.seal_operator_data(content, source="t")


@pytest.mark.parametrize("content", REFUSED.values(), ids=REFUSED.keys())
def test_when_the_reader_cannot_read_content_then_a_shared_sink_blocks_it(
    net: Guard, content: object
) -> None:
    run = net.checks.start("s", kind="shared-training")
    try:
        seal = mint_unchecked(net, content, data_class="operator_public")
    except ContentError:
        seal = "kg1.none"
    decision = run.decide(Sealed(content, seal))
    assert decision.outcome.value == "block"
    assert DOC not in decision.reason


def test_when_bytes_are_not_utf8_text_then_vetting_seals_nothing(net: Guard) -> None:
    packed = gzip.compress(DOC.encode())  # the reader would see replacement characters
    with pytest.raises(ContentError):
        net.seal_operator_data(packed, source="t")
    with pytest.raises(ContentError):
        net.seal_operator_data(memoryview(DOC.encode("utf-16")), source="t")


def test_when_bytes_are_utf8_text_then_vetting_reads_them(net: Guard) -> None:
    assert net.seal_operator_data("café, public text".encode(), source="t").startswith("kp1.")
