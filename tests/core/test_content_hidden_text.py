"""Text an object holds where neither the digest nor the text reader looks is refused,
never sealed: a subclass's ``__slots__``, a dataclass that is also a dict, and a
``_kairo`` member that is not a record's seal (a dataclass field, an Enum member's
value) is content, read and digested. Ordinary objects of the same shapes still read."""

from __future__ import annotations

import codecs
import dataclasses
import enum
import types
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from kg_testing import make_guard, mint_unchecked

from kairo_guard import ContentError, ContentRefused, Guard, Sealed, content_digest
from kairo_guard.detect.fields import record_fields, record_strings

DOC = (
    "Acme board minutes: the Lisbon plant doubles output in the third quarter and forty "
    "engineers move to the battery line under a supplier agreement nobody has seen yet."
)


class Note(str):
    __slots__ = ("body",)
    body: str


class Count(float):
    __slots__ = ("why",)
    why: str


class _Private(str):
    __slots__ = ("__body",)  # stored under a mangled name


class Plain(str):
    __slots__ = ()


@dataclasses.dataclass(slots=True)
class Row(dict[str, object]):
    body: str = ""


@dataclasses.dataclass(frozen=True)
class Coded(Mapping[str, str]):
    """A dataclass whose items, what the code iterating it reads, are its field decoded."""

    blob: str

    def __getitem__(self, key: str) -> str:
        if key != "text":
            raise KeyError(key)
        return codecs.decode(self.blob, "rot13")

    def __iter__(self) -> Iterator[str]:
        return iter(["text"])

    def __len__(self) -> int:
        return 1


@dataclasses.dataclass(slots=True)
class Slotted:
    text: str


@dataclasses.dataclass
class Doc:
    text: str
    _kairo: str


class Stored(enum.Enum):
    A = {"text": "public notes", "_kairo": DOC}  # noqa: RUF012 - an Enum member's value


def _note() -> Note:
    note = Note("public release notes")
    note.body = DOC
    return note


def _count() -> Count:
    count = Count(3)
    count.why = DOC
    return count


def _private() -> _Private:
    value = _Private("public release notes")
    object.__setattr__(value, "_Private__body", DOC)
    return value


def _row() -> Row:
    row = Row(body=DOC)
    row["text"] = "public release notes"
    return row


HIDDEN: dict[str, object] = {
    "str subclass with a slot set": _note(),
    "str subclass with a slot set, in a list": [_note()],
    "float subclass with a slot set, in a dict": {"n": _count()},
    "str subclass with a private slot set": _private(),
    "slotted dataclass that is a dict": _row(),
    "dataclass that is a mapping": {"doc": Coded(codecs.encode(DOC, "rot13"))},
}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Guard]:
    """A guard whose fingerprint net holds one of acme's documents."""
    with make_guard(tmp_path / "net", pii_gate=False) as g:
        g.index_content("acme", {"text": DOC})
        yield g


@pytest.mark.parametrize("content", HIDDEN.values(), ids=HIDDEN.keys())
def test_when_an_object_holds_text_beside_its_value_then_the_reader_refuses_it(
    content: object,
) -> None:
    with pytest.raises(ContentError):
        record_strings(content)
    with pytest.raises(ContentError):
        record_fields(content)
    with pytest.raises(ContentError):
        content_digest(content)


@pytest.mark.parametrize("content", HIDDEN.values(), ids=HIDDEN.keys())
def test_when_an_object_holds_text_beside_its_value_then_vetting_seals_nothing(
    net: Guard, content: object
) -> None:
    with pytest.raises(ContentError):
        net.seal_operator_data(content, source="t")


@pytest.mark.parametrize("content", HIDDEN.values(), ids=HIDDEN.keys())
def test_when_an_object_holds_text_beside_its_value_then_a_shared_sink_blocks_it(
    net: Guard, content: object
) -> None:
    try:
        seal = mint_unchecked(net, content, data_class="operator_public")
    except ContentError:  # nothing digests it: no seal to give
        seal = "kg1.none"
    run = net.checks.start("s", kind="shared-training")
    decision = run.decide(Sealed(content, seal))
    assert decision.outcome.value == "block"
    assert DOC not in decision.reason


def _slot_unset() -> Note:
    return Note("public release notes")  # the slot is declared, never set


ORDINARY: dict[str, tuple[object, object]] = {
    "str subclass whose slot is not set": (_slot_unset(), "public release notes"),
    "str subclass with empty slots": (Plain("public release notes"), "public release notes"),
    "slotted dataclass": (Slotted("public notes"), {"text": "public notes"}),
    "mapping proxy record with a seal": (
        types.MappingProxyType({"text": "public notes", "_kairo": "kp1.x"}),
        {"text": "public notes"},
    ),
}


@pytest.mark.parametrize(("content", "plain"), ORDINARY.values(), ids=ORDINARY.keys())
def test_when_an_object_holds_only_its_value_then_it_reads_as_that_value(
    content: object, plain: object
) -> None:
    assert record_strings(content) == record_strings(plain)
    assert content_digest(content) == content_digest(plain)


SEAL_NAMED: dict[str, object] = {
    "dataclass field": Doc("public notes", DOC),
    "enum member's value": Stored.A,
    "enum member's value in a record": {"x": Stored.A},
}


@pytest.mark.parametrize("content", SEAL_NAMED.values(), ids=SEAL_NAMED.keys())
def test_when_a_seal_named_member_is_not_a_record_s_seal_then_it_is_read_and_digested(
    content: object,
) -> None:
    assert DOC in record_strings(content)
    assert DOC in [f.text for f in record_fields(content)]


def test_when_only_a_seal_named_dataclass_field_differs_then_the_digests_differ() -> None:
    assert content_digest(Doc("public", "one")) != content_digest(Doc("public", "two"))


@pytest.mark.parametrize("content", SEAL_NAMED.values(), ids=SEAL_NAMED.keys())
def test_when_a_seal_named_member_holds_a_tenant_s_text_then_vetting_finds_it(
    net: Guard, content: object
) -> None:
    with pytest.raises(ContentRefused) as refused:
        net.seal_operator_data(content, source="t")
    assert refused.value.rule == "fingerprint.tenant-content"


@pytest.mark.parametrize("content", SEAL_NAMED.values(), ids=SEAL_NAMED.keys())
def test_when_a_seal_named_member_holds_a_tenant_s_text_then_a_shared_sink_blocks_it(
    net: Guard, content: object
) -> None:
    seal = mint_unchecked(net, content, data_class="operator_public")
    run = net.checks.start("s", kind="shared-training")
    assert run.decide(Sealed(content, seal)).rule == "fingerprint.tenant-content"


def test_when_a_record_mapping_carries_its_seal_then_the_seal_is_not_content() -> None:
    record = {"text": "public notes", "_kairo": "kp1.x"}
    assert record_strings(record) == ["text", "public notes"]
    assert content_digest(record) == content_digest({"text": "public notes"})
