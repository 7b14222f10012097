"""JSON text read by the fingerprint net (``RawJSON``: a sealed line's bytes at a scan)
is read in full or refused: the text reader never reads less than the digest covers.

A sealed line's bytes are the record's content exactly when their digest is a verified
seal's; a seal minted over bytes (vetting bytes, a sealed HTTP body) covers bytes that
need not be canonical JSON. Parsed, a repeated key keeps one value and the root seal
field is skipped: text digested, never read.
"""

from __future__ import annotations

import hashlib

import orjson
import pytest
from corpus import prose

from kairo_guard import ContentError, Guard
from kairo_guard.core.content import RawJSON
from kairo_guard.core.types import Outcome
from kairo_guard.detect.fields import record_fields, record_strings

DOC = prose("acme-supply-contract", 2)[:600]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":"hidden","a":"shown"}',
        b'{"_kairo":"hidden","a":"shown"}',
        b'{"a":{"b":"hidden","b":"shown"}}',
        b"{not json",
        b'{"a":"\xff"}',
    ],
    ids=["repeated-key", "root-seal-field", "nested-repeat", "not-json", "not-utf8"],
)
def test_when_json_text_would_be_read_in_part_then_the_reader_refuses_it(raw: bytes) -> None:
    with pytest.raises(ContentError):
        record_strings(RawJSON(raw))
    with pytest.raises(ContentError):
        record_fields(RawJSON(raw))


def test_when_json_text_is_canonical_then_it_is_read_as_its_value() -> None:
    assert record_strings(RawJSON(b'{"a":"x","b":["y",1]}')) == ["a", "x", "b", "y"]


@pytest.mark.parametrize("hide", ["canonical", "repeated-key", "root-seal-field"])
def test_when_vetted_bytes_hide_text_indexed_since_then_a_shared_sink_blocks(
    guard: Guard, hide: str
) -> None:
    text = orjson.dumps(DOC)
    body = {
        "canonical": b'{"a":' + text + b',"b":"public"}',  # the net's own case, for contrast
        "repeated-key": b'{"a":' + text + b',"a":"public"}',
        "root-seal-field": b'{"_kairo":' + text + b',"a":"public"}',
    }[hide]
    seal = guard.seal_operator_data(body, source="licensed")  # DOC not indexed yet
    guard.index_content("acme", DOC)
    run = guard.checks.start("shared-training")
    digest = hashlib.sha256(body).hexdigest()
    decision = run.decide_parts(body, seal, digest, json_bytes=True)
    assert decision.outcome is Outcome.BLOCK
