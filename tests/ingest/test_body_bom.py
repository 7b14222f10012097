"""A JSON body behind a UTF-8 byte order mark is read by Python's json (``json.loads``
of bytes, Starlette's ``request.json()``), so it is indexed by its decoded strings too,
not by its escapes."""

from __future__ import annotations

import json

from test_body_text import PARAGRAPH, _blocked, _post

from kairo_guard import Guard
from kairo_guard.detect.body import BodyText

BOM = b"\xef\xbb\xbf"


def _body() -> bytes:
    return BOM + json.dumps({"text": PARAGRAPH}, ensure_ascii=True).encode()


def test_when_a_json_body_starts_with_a_byte_order_mark_then_a_copy_of_its_text_blocks(
    guard: Guard,
) -> None:
    body = _body()
    assert json.loads(body) == {"text": PARAGRAPH}  # what a handler reads
    assert b"\\u00e4" in body
    assert _post(guard, body).status_code == 200
    assert _blocked(guard, PARAGRAPH)


def test_when_the_byte_order_mark_is_cut_across_chunks_then_the_strings_are_decoded() -> None:
    body = _body()
    for cut in range(1, 5):
        emitted: list[str] = []
        text = BodyText(emitted.append, segment=1 << 20, overlap=0)
        text.push(body[:cut])
        text.push(body[cut:])
        text.close()
        assert "".join(emitted) == " text " + PARAGRAPH, cut
