"""A JSON body in UTF-16 or UTF-32 is read by Python's json (``json.loads`` of bytes
detects the encoding; Starlette's ``request.json()`` uses it), so it is indexed by its
decoded strings, not as UTF-8 garbage."""

from __future__ import annotations

import json

import pytest
from test_body_text import PARAGRAPH, _blocked, _post

from kairo_guard import Guard
from kairo_guard.detect.body import BodyText


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_when_a_json_body_is_utf16_or_utf32_then_a_copy_of_its_text_blocks(
    guard: Guard, encoding: str
) -> None:
    body = json.dumps({"text": PARAGRAPH}).encode(encoding)
    assert json.loads(body) == {"text": PARAGRAPH}  # what a handler reads
    assert _post(guard, body).status_code == 200
    assert _blocked(guard, PARAGRAPH)


@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_when_a_utf16_json_body_arrives_in_small_chunks_then_its_strings_are_decoded(
    chunk: int,
) -> None:
    body = json.dumps({"text": PARAGRAPH, "n": [1, "😀"]}).encode("utf-16")
    emitted: list[str] = []
    text = BodyText(emitted.append, segment=1 << 20, overlap=0)
    for i in range(0, len(body), chunk):
        text.push(body[i : i + chunk])
    text.close()
    assert "".join(emitted) == " text " + PARAGRAPH + " n 😀"


def test_when_a_binary_body_starts_with_zero_bytes_then_its_text_is_still_read() -> None:
    body = b"\x00\x00\x00\x18ftypmp42 " + PARAGRAPH.encode()
    emitted: list[str] = []
    text = BodyText(emitted.append, segment=1 << 20, overlap=0)
    text.push(body)
    text.close()
    assert PARAGRAPH in "".join(emitted)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_when_the_first_chunk_is_only_a_byte_order_mark_then_the_body_is_still_decoded(
    encoding: str,
) -> None:
    body = json.dumps(["😀", PARAGRAPH]).encode(encoding)
    emitted: list[str] = []
    text = BodyText(emitted.append, segment=1 << 20, overlap=0)
    for i in range(0, len(body), 4):
        text.push(body[i : i + 4])
    text.close()
    assert "".join(emitted) == " 😀 " + PARAGRAPH
