"""A request body is indexed as the text a sink's reader sees, whatever its size.

A JSON body is indexed by its decoded strings (keys and values), never by its escapes:
``ensure_ascii`` writes every accented letter as ``\\u00e4`` and every quote and newline
as ``\\"`` and ``\\n``, which the sink never sees. Bodies larger than one segment are
decoded as they stream, a single huge string included, and malformed JSON is indexed
as its bytes (never skipped).
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from typing import Any

import httpx
import orjson
import pytest
from corpus import prose
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard
from kairo_guard.core.types import TenantId
from kairo_guard.detect.body import SEGMENT_BYTES, BodyText, StreamingIndexer
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE, FingerprintIndex
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware

PARAGRAPH = (
    "Die Vertragsparteien vereinbaren, dass sämtliche Prüfberichte über die "
    'Qualitätsmängel der Lieferung „Charge 17" bis zum Ende des Geschäftsjahres '
    "vertraulich behandelt werden.\nÜber Änderungen der Gewährleistungsfristen "
    "entscheidet ausschließlich der gemeinsame Lenkungsausschuss, dessen Beschlüsse "
    "schriftlich festgehalten werden müssen."
)
"""A tenant's paragraph: umlauts, quotes and a newline, all escaped by ``ensure_ascii``."""

MiB = 1 << 20


def _app(guard: Guard) -> Any:
    async def documents(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"sealed": request.scope["kairo_guard"].seal is not None})

    app = Starlette(routes=[Route("/documents", documents, methods=["POST"])])
    return GuardMiddleware(app, guard=guard, max_body_bytes=16 * MiB)


def _post(guard: Guard, body: bytes) -> httpx.Response:
    key = new_api_key(guard.store, "acme")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app(guard))
        async with httpx.AsyncClient(transport=transport, base_url="http://kg.test") as client:
            return await client.post(
                "/documents", content=body, headers={"authorization": f"Bearer {key}"}
            )

    return asyncio.run(go())


def _documents(size: int, paragraph_at: int) -> list[dict[str, str]]:
    filler = prose("acme-filler", 6)
    docs = [{"id": f"doc-{i}", "text": filler} for i in range(size // len(filler) + 1)]
    docs[paragraph_at]["text"] = filler[:400] + "\n\n" + PARAGRAPH + "\n\n" + filler[400:]
    return docs


def _blocked(guard: Guard, text: str) -> bool:
    report = guard.check([{"text": text}], sink="shared-training", mode="filter")
    return [v.rule for v in report.violations] == [FINGERPRINT_RULE]


@pytest.mark.parametrize("size", [64 * 1024, 3 * MiB // 2], ids=["64KiB", "1.5MiB"])
def test_when_a_json_body_escapes_its_text_then_a_copy_of_a_paragraph_blocks(
    guard: Guard, size: int
) -> None:
    docs = _documents(size, paragraph_at=len(_documents(size, 0)) * 2 // 3)
    body = json.dumps({"documents": docs}, ensure_ascii=True).encode()
    assert b"\\u00e4" in body
    assert len(body) >= size
    assert _post(guard, body).status_code == 200
    assert _blocked(guard, PARAGRAPH)


def test_when_one_huge_string_is_posted_then_a_paragraph_deep_inside_it_blocks(
    guard: Guard,
) -> None:
    filler = prose("acme-filler", 6)
    text = filler * (3 * MiB // len(filler)) + PARAGRAPH + filler * 20
    body = json.dumps({"text": text}, ensure_ascii=True).encode()
    assert _post(guard, body).status_code == 200
    assert _blocked(guard, PARAGRAPH)


@pytest.mark.parametrize(
    "tail",
    [b'", "x": tru', b'"} Hello', b'\\q"}', b'"} ] ] }'],
    ids=["cut-literal", "text-after-end", "bad-escape", "extra-closers"],
)
def test_when_a_large_json_body_is_malformed_then_its_text_is_still_indexed(
    guard: Guard, tail: bytes
) -> None:
    head = orjson.dumps({"text": prose("acme-filler", 6) * (2 * MiB // 3000)})[:-2]
    body = head + tail + b"\n" + PARAGRAPH.encode() + b"\n" + b"x" * 100
    assert len(body) > SEGMENT_BYTES
    assert _post(guard, body).status_code == 200
    assert _blocked(guard, PARAGRAPH)


class RecordingIndex(FingerprintIndex):
    """The real index, keeping the texts it was given."""

    def __init__(self, guard: Guard) -> None:
        super().__init__(guard.store, guard.fingerprints.fingerprinter)
        self.texts: list[object] = []

    def add(self, tenant: TenantId, content: object) -> int:
        self.texts.append(content)
        return super().add(tenant, content)


PIECES = ["plain", 'quo"te\\', "é", "😀 emoji", "\u2028", PARAGRAPH * 4]


@pytest.mark.parametrize("chunk", [1, 7, 4096], ids=["1B", "7B", "4KiB"])
def test_when_a_large_body_arrives_in_any_chunking_then_every_string_is_indexed(
    guard: Guard, chunk: int
) -> None:
    value: dict[str, Any] = {"a": PIECES, "n": [1, -2.5e3, True, None], "k\u00e4y": "v"}
    value["filler"] = prose("acme", 12)  # past a segment and its overlap
    body = json.dumps(value, ensure_ascii=True).encode()
    index = RecordingIndex(guard)
    indexer = StreamingIndexer(index, "acme", segment_bytes=1024, overlap=1536)

    async def feed() -> None:
        for i in range(0, len(body), chunk):
            await indexer.feed(body[i : i + chunk])
        await indexer.finish()

    asyncio.run(feed())
    assert all(isinstance(t, str) for t in index.texts)
    assert len(index.texts) > 1
    for piece in ["a", *PIECES, "n", "k\u00e4y", "v"]:
        assert any(piece in str(t) for t in index.texts), piece
    assert not any("\\u00" in str(t) for t in index.texts)
    assert indexer.indexed > 0


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 13])
def test_when_json_is_cut_at_every_byte_then_the_text_is_its_strings_in_document_order(
    chunk: int,
) -> None:
    value = {"z": ["\\", '\\"', "é😀ß", "\ud7ff\ue000"], "a": {"k": [1.5e-3, -0, "x"]}}
    body = json.dumps(value, ensure_ascii=chunk % 2 == 1, indent=1).encode()
    emitted: list[str] = []
    text = BodyText(emitted.append, segment=1 << 20, overlap=0)
    for i in range(0, len(body), chunk):
        text.push(body[i : i + chunk])
    text.close()
    strings = ["z", "\\", '\\"', "é😀ß", "\ud7ff\ue000", "a", "k", "x"]
    assert "".join(emitted).split(" ")[1:] == strings


def test_when_one_string_value_is_tens_of_mib_then_memory_stays_bounded() -> None:
    chunk = (prose("acme-filler", 6).replace("\n", "\\n") + ' \\u00e4\\"x ').encode()
    chunk = chunk * (MiB // len(chunk))
    emitted: list[int] = []
    text = BodyText(lambda segment: emitted.append(len(segment)), SEGMENT_BYTES, 4096)
    tracemalloc.start()
    try:
        text.push(b'{"text": "')
        for _ in range(16):
            text.push(chunk)
        text.push(b'"}')
        text.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(emitted) > 15 * MiB
    assert max(emitted) <= SEGMENT_BYTES + 4096
    assert peak < 24 * MiB  # a few copies of one chunk and one segment, not the 48 MiB


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=True).encode() + b"\n" for r in records)


@pytest.mark.parametrize(
    "body",
    [
        _jsonl([{"id": i, "text": prose("acme-filler", 1)} for i in range(5)] + [{"t": PARAGRAPH}]),
        json.dumps({"score": float("nan"), "text": PARAGRAPH}, ensure_ascii=True).encode(),
        json.dumps({"x": "\ud800", "text": PARAGRAPH}, ensure_ascii=True).encode(),
        _jsonl(
            [{"id": i, "text": prose("acme-filler", 6)} for i in range(900)] + [{"t": PARAGRAPH}]
        )
        + json.dumps([float("inf"), "\udc00", PARAGRAPH], ensure_ascii=True).encode(),
    ],
    ids=["json-lines", "nan", "lone-surrogate", "large-json-lines-inf-surrogate"],
)
def test_when_a_body_is_json_only_a_lenient_reader_accepts_then_its_text_is_indexed_decoded(
    guard: Guard, body: bytes
) -> None:
    assert b"\\u00e4" in body
    assert _post(guard, body).status_code == 200
    assert _blocked(guard, PARAGRAPH)


@pytest.mark.parametrize(
    "body",
    [
        PARAGRAPH.encode(),
        b'{"text": "' + PARAGRAPH.encode() + b'\\q"}',
        b"\xef\xbb\xbf" + PARAGRAPH.encode(),
    ],
    ids=["plain-text", "bad-escape", "byte-order-mark"],
)
def test_when_a_small_body_is_not_json_then_it_is_indexed_as_text(
    guard: Guard, body: bytes
) -> None:
    assert _post(guard, body).status_code == 200
    assert _blocked(guard, PARAGRAPH)
