"""Bytes that hold JSON are read as the value they hold: a record's canonical JSON bytes
digest as the record, so read raw (``\\n`` and ``\\u00e9`` left as escapes) they would
launder the record's text through vetting, and past a shared sink as ``Sealed(bytes)``.
A repeated key is read with all its values (a parser keeps one, the digest covers all);
bytes that are not JSON read as before."""

from __future__ import annotations

import orjson
import pytest
from corpus import prose
from kg_testing import mint_unchecked

from kairo_guard import ContentError, ContentRefused, Guard, Sealed, content_digest
from kairo_guard.core.content import canonical_json
from kairo_guard.detect.fields import record_fields, record_strings

DOC = prose("acme-board-memo", 2)[:600]
COPY = {"text": "Digest. " + DOC.replace(" ", "\n")}  # escaped as \n in its JSON


def test_when_a_record_s_canonical_bytes_are_read_then_they_read_as_the_record() -> None:
    raw = canonical_json(COPY)
    assert content_digest(raw) == content_digest(COPY)
    assert record_strings(raw) == record_strings(COPY)
    assert record_fields(raw) == record_fields(COPY)
    assert (
        record_strings(memoryview(raw)) == record_strings(bytearray(raw)) == ["text", COPY["text"]]
    )


def test_when_a_tenant_s_text_is_vetted_as_a_record_s_json_bytes_then_it_is_refused(
    guard: Guard,
) -> None:
    guard.index_content("acme", {"text": DOC})
    with pytest.raises(ContentRefused) as refused:
        guard.seal_operator_data(canonical_json(COPY), source="t")
    assert refused.value.rule == "fingerprint.tenant-content"


def test_when_a_record_vetted_clean_comes_back_as_its_json_bytes_then_a_shared_sink_blocks(
    guard: Guard,
) -> None:
    seal = guard.seal_operator_data(COPY, source="t")  # before acme's text was indexed
    guard.index_content("acme", {"text": DOC})
    run = guard.checks.start("s", kind="shared-training")
    assert run.decide(Sealed(canonical_json(COPY), seal)).rule == "fingerprint.tenant-content"


BODIES: dict[str, bytes] = {
    "pretty printed": orjson.dumps(COPY, option=orjson.OPT_INDENT_2),
    "escaped non-ascii": b'{"text": '
    + orjson.dumps(COPY["text"]).replace(b"\n", b"\\u000a")
    + b"}",
    "a byte order mark": b"\xef\xbb\xbf " + orjson.dumps(COPY),
    "json lines": orjson.dumps({"id": 1}) + b"\n" + orjson.dumps(COPY) + b"\n",
    "NaN beside it": b'{"n": NaN, "text": ' + orjson.dumps(COPY["text"]) + b"}",
    "a root seal field": b'{"_kairo": ' + orjson.dumps(COPY["text"]) + b', "a": "public"}',
    "a json string": orjson.dumps(COPY["text"]),
    "a repeated key": b'{"text": ' + orjson.dumps(COPY["text"]) + b', "text": "public"}',
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_when_json_bytes_hide_a_tenant_s_text_in_escapes_then_vetting_finds_it(
    guard: Guard, body: bytes
) -> None:
    guard.index_content("acme", {"text": DOC})
    with pytest.raises(ContentRefused) as refused:
        guard.seal_operator_data(body, source="t")
    assert refused.value.rule == "fingerprint.tenant-content"
    assert COPY["text"] in record_strings(body)


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_when_json_bytes_hide_a_tenant_s_text_in_escapes_then_a_shared_sink_blocks(
    guard: Guard, body: bytes
) -> None:
    guard.index_content("acme", {"text": DOC})
    seal = mint_unchecked(guard, body, data_class="operator_public")
    run = guard.checks.start("s", kind="shared-training")
    assert run.decide(Sealed(body, seal)).rule == "fingerprint.tenant-content"


def test_when_json_bytes_repeat_a_key_then_every_value_is_read() -> None:
    assert record_strings(b'{"a": {"b": "hidden", "b": "shown"}}') == ["a", "b", "hidden", "shown"]
    assert record_strings(b'{"a": 1}\n{"b": "x", "b": "y"}\n') == ["a", "b", "x", "y"]


def test_when_json_bytes_nest_past_the_parser_then_they_are_refused(guard: Guard) -> None:
    body = b"[" * 5000 + b'"x"' + b"]" * 5000
    with pytest.raises(ContentError):
        record_strings(body)
    with pytest.raises(ContentError):
        guard.seal_operator_data(body, source="t")


TEXT: dict[str, bytes] = {
    "prose": "café, public release notes\nline two".encode(),
    "a log opening with a bracket": b"[INFO] started\n[INFO] ready \\n done",
    "a template opening with a brace": b"{{ greeting }}, {{ name }}",
    "a quotation": b'"To be," she said, "or not."',
}


@pytest.mark.parametrize("body", TEXT.values(), ids=TEXT.keys())
def test_when_bytes_are_not_json_then_they_read_as_their_text(guard: Guard, body: bytes) -> None:
    assert record_strings(body) == [body.decode()]
    assert guard.seal_operator_data(body, source="t").startswith("kp1.")


def test_when_ordinary_json_bytes_are_vetted_then_they_are_sealed(guard: Guard) -> None:
    guard.index_content("acme", {"text": DOC})
    body = orjson.dumps({"title": "Release notes", "lines": ["one\ntwo", "café"]})
    assert guard.seal_operator_data(body, source="t").startswith("kp1.")
    assert record_strings(body) == ["lines", "one\ntwo", "café", "title", "Release notes"]
