"""Canonical content, the sealed line form, and scan's byte-level fast path."""

from __future__ import annotations

import io
import json

import orjson
import pytest
from kg_testing import mint_unchecked

from kairo_guard import Guard, content_digest
from kairo_guard.cli.records import scan_stream
from kairo_guard.core.content import canonical_json, sealed_line, split_sealed_line

RECORD = {"text": "public domain text", "n": 3, "nested": {"b": [1, 2], "a": "é"}}


def _scan(guard: Guard, lines: list[bytes], kind: str = "shared-training") -> list[str]:
    run = guard.checks.start(guard.resolve_sink("s", kind=kind))
    report = scan_stream(run, io.BytesIO(b"\n".join(lines) + b"\n"), None, 1 << 20)
    return [v.rule for v in report.violations] if report.blocked else ["ok"] * report.total


def test_canonical_json_sorts_keys_recursively_and_drops_the_seal() -> None:
    assert canonical_json({**RECORD, "_kairo": "x"}) == (
        b'{"n":3,"nested":{"a":"\\xc3\\xa9","b":[1,2]},"text":"public domain text"}'.decode(
            "unicode_escape"
        ).encode("latin-1")
    )


def test_sealed_line_splits_back_into_canonical_bytes_and_seal() -> None:
    line = sealed_line(RECORD, "kg1.k1.abc.def")
    assert split_sealed_line(line.rstrip(b"\n")) == (canonical_json(RECORD), "kg1.k1.abc.def")
    assert split_sealed_line(sealed_line({}, "kg1.x").rstrip()) == (b"{}", "kg1.x")


@pytest.mark.parametrize(
    "line",
    [
        b'{"a":1}',
        b'{"a":1,"_kairo":"x"} ',
        b'["_kairo"]',
        b'{"a":1,"_kairo":"\xc3\xa9"}',
        b'{"a":1,"_kairo":"x","b":"y"}',
        b'{"a":1,"_kairo":"x\\"y"}',
    ],
)
def test_other_shapes_do_not_split(line: bytes) -> None:
    assert split_sealed_line(line) is None


def test_canonical_and_reformatted_lines_of_the_same_record_both_verify(guard: Guard) -> None:
    seal = mint_unchecked(guard, RECORD, data_class="operator_public")
    canonical = sealed_line(RECORD, seal).rstrip(b"\n")
    pretty = json.dumps({**RECORD, "_kairo": seal}, indent=None, ensure_ascii=True).encode()
    assert _scan(guard, [canonical, pretty]) == ["ok", "ok"]


def test_a_changed_byte_in_a_canonical_line_is_blocked(guard: Guard) -> None:
    seal = mint_unchecked(guard, RECORD, data_class="operator_public")
    line = sealed_line(RECORD, seal).rstrip(b"\n").replace(b"domain", b"DOMAIN")
    assert _scan(guard, [line]) == ["seal.digest-mismatch"]


def test_a_seal_member_hidden_in_a_nested_object_is_not_taken_as_the_record_seal(
    guard: Guard,
) -> None:
    inner = {"x": {"y": 1}}
    seal = mint_unchecked(guard, inner, data_class="operator_public")
    smuggled = b'{"x":{"y":1,"_kairo":"' + seal.encode() + b'"}}'
    assert _scan(guard, [smuggled]) == ["seal.missing"]


def test_a_line_that_only_looks_sealed_is_blocked(guard: Guard) -> None:
    seal = mint_unchecked(guard, {"a": 1}, data_class="operator_public")
    tricky = b'{"a":1,"_kairo":"' + seal.encode() + b'","b":"' + seal.encode() + b'"}'
    assert _scan(guard, [tricky]) == ["seal.digest-mismatch"]


def test_label_record_output_is_the_canonical_line_form(guard: Guard) -> None:
    sealed = guard.label_record(RECORD, tenant="acme")
    line = orjson.dumps(sealed)
    parts = split_sealed_line(line)
    assert parts is not None
    assert parts[0] == canonical_json(RECORD)
    assert guard.open_seal(parts[1]).digest == content_digest(RECORD)
