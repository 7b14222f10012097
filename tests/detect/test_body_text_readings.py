"""The readings of a body the indexer adds: the strings a parsed value leaves out, and raw
text with its JSON escapes and form encoding decoded, leniently."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import pytest

from kairo_guard import ContentRefused, Guard
from kairo_guard.detect.body import StreamingIndexer, read_body
from kairo_guard.detect.body_text import decoded_readings, json_unescaped, value_holds_all_text
from kairo_guard.detect.fields import record_strings
from kairo_guard.detect.winnow import record_text

PASSAGE = 'Prüfbericht „Charge 17" 😀\nfür den Lenkungsausschuss\tvertraulich'


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (json.dumps(PASSAGE)[1:-1], PASSAGE),
        (r"\ud83d\ude00 \u00E4 \/ \\ \" \b\f\n\r\t", '😀 ä / \\ " \b\f\n\r\t'),
        (r"bad \x and \u12 and \ at the end \\", r"bad \x and \u12 and \ at the end " + "\\"),
        (r"lone \ud83d here and \ude00 there", "lone \ufffd here and \ufffd there"),
        (r'\u00e4"\u00e4', 'ä"ä'),
        ("\\", "\\"),
    ],
    ids=["ensure-ascii", "every-escape", "bad-escapes-kept", "lone-surrogates", "quote", "end"],
)
def test_when_raw_text_has_json_escapes_then_they_are_decoded_leniently(
    raw: str, text: str
) -> None:
    assert json_unescaped(raw) == text


def test_when_raw_text_is_a_form_then_its_readings_hold_the_decoded_values() -> None:
    form = urlencode({"payload": json.dumps({"text": PASSAGE}), "n": "1"})
    readings = decoded_readings(form)
    assert any(PASSAGE in record_text(reading) for reading in readings)
    assert not any(PASSAGE in reading for reading in readings)  # its escapes: the reader's
    assert decoded_readings("plain text, nothing encoded") == []
    assert decoded_readings("100% sure") == []  # unchanged readings are left out


@pytest.mark.parametrize(
    "record",
    [json.dumps({"text": PASSAGE}), {"payload": json.dumps({"text": PASSAGE})}],
    ids=["json-text", "json-in-a-field"],
)
def test_when_a_record_holds_escaped_json_text_then_its_text_is_also_read_decoded(
    record: object,
) -> None:
    as_it_is = " ".join(record_strings(record))
    assert PASSAGE not in as_it_is
    assert record_text(record) == as_it_is + " " + json_unescaped(as_it_is)
    assert PASSAGE in record_text(record)


def test_when_text_has_no_escape_a_reader_decodes_then_it_is_read_once() -> None:
    assert record_text({"text": PASSAGE}) == f"text {PASSAGE}"
    assert record_text({"path": "C:\\q3\\x"}) == "path C:\\q3\\x"  # bad escapes stay
    assert record_text({"path": "C:\\new"}) == "path C:\\new path C:\new"


@pytest.mark.parametrize(
    ("data", "whole"),
    [
        (b'{"a": "x: y", "b": ["c", {"d": 1}]}', True),
        (b'["no", "objects"]', True),
        (b'{"a": "x", "a": "y"}', False),
        (b'{"a": {"b": "x: y", "b": "z"}}', False),
        (b'{"_kairo": "x", "a": "y"}', False),
        (b'{"\\u005fkairo": "x"}', False),
        (b'{"a": "x\\u003a", "a": "y"}', False),
        (b'{"a": "x\\u003Ay"}', False),  # an escaped colon: read the bytes as well
    ],
)
def test_when_a_parsed_value_drops_text_of_its_bytes_then_it_is_not_read_alone(
    data: bytes, whole: bool
) -> None:
    assert value_holds_all_text(json.loads(data), data) is whole


def test_when_a_small_body_repeats_a_key_then_both_values_are_read() -> None:
    text = json.dumps(PASSAGE, ensure_ascii=False).encode()
    data = b'{"text": ' + text + b', "text": "ok", "_kairo": "seal text"}'
    emitted: list[object] = []
    read_body(data, emitted.append)
    assert emitted[0] == {"text": "ok", "_kairo": "seal text"}
    assert PASSAGE in str(emitted[1])
    assert "seal text" in str(emitted[1])


def test_when_the_streaming_indexer_reads_a_small_body_then_a_repeated_key_is_indexed(
    guard: Guard,
) -> None:
    passage = " ".join([PASSAGE] * 6)
    data = json.dumps({"text": passage}).encode()[:-1] + b', "text": "ok"}'
    indexer = StreamingIndexer(guard.fingerprints, "acme")

    async def feed() -> None:
        await indexer.feed(data)
        await indexer.finish()

    asyncio.run(feed())
    with pytest.raises(ContentRefused):
        guard.seal_operator_data({"text": passage}, source="licensed")
