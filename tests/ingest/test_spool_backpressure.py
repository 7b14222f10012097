"""Back-pressure at the door: a spool over its limit, or one that cannot be written, is 503.

A guarded Starlette app is served through httpx's ASGI transport with a real spool on
disk (the writer thread, no indexer of its own: the test drains the spool with
``guard.wait_indexed()``), and a real SQLite store.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from kg_testing import make_guard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import SPOOL_FULL, GuardMiddleware
from kairo_guard.ingest.spooling import BACKLOG_EVERY, ENV_WRITER
from kairo_guard.store.spool import backlog, encode_body, segments
from kairo_guard.store.spool_append import SegmentAppender

TOML = "[limits]\nspool_max_bytes = {limit}\n"

WRITERS = ["thread", "process", "native"]


def _guard(home: Path, limit: int | None = None) -> Guard:
    home.mkdir(parents=True)
    if limit is not None:
        (home / "kairo-guard.toml").write_text(TOML.format(limit=limit))
    return make_guard(home, pii_gate=False)


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Guard]:
    """A guard whose spool is full past 64 bytes of backlog."""
    with _guard(tmp_path / "tiny", limit=64) as g:
        yield g


def _app(guard: Guard) -> GuardMiddleware:
    async def documents(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"sha256": hashlib.sha256(body).hexdigest()}, status_code=201)

    app = Starlette(routes=[Route("/documents", documents, methods=["POST"])])
    return GuardMiddleware(app, guard=guard, indexer="none")


def _audit(guard: Guard) -> list[dict[str, object]]:
    guard.audit.flush()
    log = guard.settings.home / "audit" / "audit.jsonl"
    return [orjson.loads(line) for line in log.read_bytes().splitlines()]


async def _post(client: httpx.AsyncClient, key: str, i: int) -> httpx.Response:
    body = {"text": f"Acme field report {i}: the Porto line ran two shifts and shipped on time."}
    return await client.post("/documents", json=body, headers={"authorization": f"Bearer {key}"})


def test_when_the_backlog_is_over_the_limit_then_503_retry_after_until_it_is_indexed(
    tiny: Guard,
) -> None:
    assert tiny.settings.limits.spool_max_bytes == 64
    key = new_api_key(tiny.store, "acme")
    app = _app(tiny)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            first = await _post(client, key, 1)  # the spool is empty: accepted
            await asyncio.sleep(BACKLOG_EVERY + 0.05)  # the backlog is measured again
            full = [await _post(client, key, i) for i in range(2, 5)]
            tiny.wait_indexed()  # this process indexes the spool: the backlog drains
            await asyncio.sleep(BACKLOG_EVERY + 0.05)
            after = await _post(client, key, 5)
            return [first, *full, after]

    first, *full, after = asyncio.run(run())
    assert first.status_code == 201
    for response in full:
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["rule"] == SPOOL_FULL
        assert "kairo-provenance" not in response.headers
    assert after.status_code == 201
    assert backlog(tiny.spool_directory).pending_bytes > 0  # the last body waits for the index
    refused = [e for e in _audit(tiny) if e.get("rule") == SPOOL_FULL]
    assert [(e["event"], e["status"]) for e in refused] == [("request", 503)] * len(full)
    assert {e["tenant"] for e in refused} == {tiny.keys.pseudonym("acme")}
    # a refused body was never spooled: only the two accepted ones are indexed
    tiny.wait_indexed()
    assert len(tiny.store.list_provenance("acme")) == 2


def _refused_three(guard: Guard) -> None:
    key = new_api_key(guard.store, "acme")
    app = _app(guard)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
            return [await _post(client, key, i) for i in range(3)]

    for response in asyncio.run(run()):
        assert response.status_code == 503, response.text
        assert "could not be recorded" in response.json()["detail"]
        assert response.headers["retry-after"] == "1"
    statuses = [e["status"] for e in _audit(guard) if e.get("event") == "request"]
    assert statuses == [503] * 3


@pytest.mark.parametrize("writer", WRITERS)
def test_when_the_spool_directory_cannot_be_created_then_503_could_not_be_recorded(
    writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_WRITER, writer)
    with _guard(tmp_path / "state") as guard:
        # running as root, permissions do not stop a write: a dangling link where the
        # spool's directory should be does (it cannot be created, nothing can be written)
        guard.spool_directory.symlink_to(tmp_path / "gone" / "spool")
        _refused_three(guard)


def test_when_the_spool_path_is_a_file_then_503_could_not_be_recorded_never_an_error(
    tmp_path: Path,
) -> None:
    # a spool that cannot be listed (ENOTDIR here; EACCES, EIO elsewhere) must not crash
    # the request (a 500, unaudited): the write decides, and it answers 503
    with _guard(tmp_path / "state") as guard:
        guard.spool_directory.write_bytes(b"not a directory")
        _refused_three(guard)


def test_when_a_write_fails_then_append_says_why_and_the_next_group_opens_a_new_segment(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "spool"
    appender = SegmentAppender(directory, segment_bytes=1)  # a new segment for each group
    record = encode_body("acme", "", b"first body", b"POST /documents")
    assert appender.append([record]) is None
    (first,) = segments(directory)
    # the directory goes away and a file takes its name: the next segment cannot open
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    directory.write_bytes(b"")
    error = appender.append([encode_body("acme", "", b"second body")])
    assert error is not None
    assert error.startswith("cannot write the spool")
    directory.unlink()
    directory.mkdir()
    assert appender.append([encode_body("acme", "", b"third body")]) is None
    (second,) = segments(directory)
    assert second != first
    appender.close()


def test_when_bodies_are_spooled_then_the_backlog_counts_their_bytes_until_indexed(
    guard: Guard,
) -> None:
    records = [encode_body("acme", "", f"body {i}".encode() * 40) for i in range(5)]
    appender = SegmentAppender(guard.spool_directory)
    assert appender.append(records) is None
    assert backlog(guard.spool_directory).pending_bytes == sum(len(r) for r in records)
    started = time.monotonic()
    guard.wait_indexed()
    assert time.monotonic() - started < 10
    assert backlog(guard.spool_directory).pending_bytes == 0
    appender.close()


def test_when_the_spool_is_over_its_limit_then_a_websocket_is_refused_before_it_is_accepted(
    tiny: Guard,
) -> None:
    from kg_testing import running_server
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket
    from websockets.sync.client import connect as ws_connect

    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())

    app = GuardMiddleware(
        Starlette(routes=[WebSocketRoute("/chat", chat)]), guard=tiny, indexer="none"
    )
    key = new_api_key(tiny.store, "acme")
    appender = SegmentAppender(tiny.spool_directory)
    assert appender.append([encode_body("acme", "", b"x" * 200)]) is None  # over 64 bytes
    appender.close()
    headers = {"authorization": f"Bearer {key}"}
    with running_server(app) as url:
        ws_url = url.replace("http://", "ws://") + "/chat"
        with pytest.raises(Exception, match="403"):  # refused before the handshake completes
            ws_connect(ws_url, additional_headers=headers)
        assert [e for e in _audit(tiny) if e.get("rule") == SPOOL_FULL]
        tiny.wait_indexed()
        time.sleep(BACKLOG_EVERY + 0.05)  # the next measurement sees the empty spool
        with ws_connect(ws_url, additional_headers=headers) as ws:
            ws.send("hello")
            assert ws.recv() == "hello"


def test_when_the_disk_has_less_free_space_than_the_floor_then_503_spool_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the spool never fills the disk: below limits.spool_min_free_bytes of free space
    # on its file system, bodies are refused however small the backlog
    home = tmp_path / "floor"
    home.mkdir()
    (home / "kairo-guard.toml").write_text("[limits]\nspool_min_free_bytes = 1099511627776\n")
    free = {"bytes": 10 << 40}  # 10 TiB, then 1 GiB: statvfs as the file system reports

    real_statvfs = os.statvfs

    def statvfs(path: object) -> os.statvfs_result:
        real = real_statvfs(path)  # type: ignore[arg-type]
        fields = list(real)
        fields[1], fields[4] = 1, free["bytes"]  # f_frsize, f_bavail
        return os.statvfs_result(fields)

    monkeypatch.setattr(os, "statvfs", statvfs)
    with make_guard(home, pii_gate=False) as guard:
        key = new_api_key(guard.store, "acme")
        app = _app(guard)

        async def run() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
                first = await _post(client, key, 1)
                free["bytes"] = 1 << 30
                await asyncio.sleep(BACKLOG_EVERY + 0.05)  # measured again
                return [first, await _post(client, key, 2)]

        first, refused = asyncio.run(run())
        assert first.status_code == 201
        assert refused.status_code == 503
        assert refused.json()["rule"] == SPOOL_FULL
        assert int(refused.headers["retry-after"]) >= 1
        assert [e["status"] for e in _audit(guard) if e.get("rule") == SPOOL_FULL] == [503]
