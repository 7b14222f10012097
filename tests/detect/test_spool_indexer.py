"""The spool indexer: erased tenants, a lagging index at shared sinks, its audit entries,
and the indexer modes of a service (thread, process under SCHED_IDLE).

Bodies reach the spool through ``GuardMiddleware`` (httpx's ASGI transport) or are
written with ``SegmentAppender`` directly; the store is SQLite, the indexer the real one.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from corpus import prose
from kg_testing import make_guard, sealed_record
from procs import child_pids
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard
from kairo_guard.detect.indexer import INDEX_LAGGING_RULE, SpoolIndexer
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.ingest.spooling import IngestSpool
from kairo_guard.store.spool import SpoolRecord, backlog, encode_body, indexer_lock
from kairo_guard.store.spool_append import SegmentAppender

TENANT = "zebra-tenant-7"
"""A tenant id that appears nowhere else: no audit entry may hold it."""


def _texts(name: str, n: int) -> list[str]:
    return [prose(f"{name}-{i}", paragraphs=1) for i in range(n)]


def _app(guard: Guard) -> GuardMiddleware:
    async def documents(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"seal": request.scope["kairo_guard"].seal})

    app = Starlette(routes=[Route("/documents/upload", documents, methods=["POST"])])
    return GuardMiddleware(app, guard=guard, indexer="none")


def _ingest(guard: Guard, tenant: str, texts: list[str]) -> list[str]:
    """POST each text as ``tenant``; return the bodies' digests (all accepted)."""
    key = new_api_key(guard.store, tenant)
    app = _app(guard)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
            auth = {"authorization": f"Bearer {key}"}
            bodies = [orjson.dumps({"text": t}) for t in texts]
            return [await client.post("/documents/upload", content=b, headers=auth) for b in bodies]

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * len(texts)
    return [hashlib.sha256(orjson.dumps({"text": t})).hexdigest() for t in texts]


def _audit(guard: Guard) -> list[dict[str, object]]:
    guard.audit.flush()
    log = guard.settings.home / "audit" / "audit.jsonl"
    return [orjson.loads(line) for line in log.read_bytes().splitlines()]


def _fingerprinted(guard: Guard, tenant: str) -> int:
    return sum(1 for _, t in guard.store.iter_fingerprints() if t == tenant)


def _shared_rules(guard: Guard, text: str) -> list[str]:
    copy = sealed_record(guard, {"text": text.upper()}, data_class="operator_public")
    report = guard.check([copy], sink=guard.resolve_sink("s", kind="shared-training"))
    return [v.rule for v in report.violations]


def test_when_a_tenant_is_erased_then_its_spooled_bodies_are_indexed_first_and_leave_nothing(
    guard: Guard,
) -> None:
    digests = _ingest(guard, "acme", _texts("erase-me", 3))
    assert backlog(guard.spool_directory).pending_bytes > 0  # nothing indexed yet
    guard.erase_tenant("acme")
    assert backlog(guard.spool_directory).pending_bytes == 0
    entries = _audit(guard)
    events = [e["event"] for e in entries]
    erase_at = events.index("tenant.erase")
    seals = [i for i, e in enumerate(entries) if e["event"] == "seal"]
    # indexed before the erasure ran (the watermark), not skipped after it
    assert len(seals) == 3
    assert max(seals) < erase_at
    assert {entries[i]["digest"] for i in seals} == set(digests)
    assert "spool.erased" not in events
    assert entries[erase_at]["removed"]["provenance"] == 3  # type: ignore[index]
    assert guard.store.list_provenance("acme") == []
    assert _fingerprinted(guard, "acme") == 0


def test_when_a_body_is_spooled_after_the_erasure_then_it_is_skipped_and_audited(
    guard: Guard,
) -> None:
    text = prose("after-erasure", paragraphs=1)
    _ingest(guard, "acme", [prose("before-erasure", paragraphs=1)])
    guard.erase_tenant("acme")
    body = orjson.dumps({"text": text})
    digest = hashlib.sha256(body).hexdigest()
    seal = guard.sealer.seal_spooled(digest, tenant="acme", source="http")
    appender = SegmentAppender(guard.spool_directory)
    assert appender.append([encode_body("acme", seal, body, b"POST /documents/upload")]) is None
    appender.close()
    guard.wait_indexed()
    skipped = [e for e in _audit(guard) if e["event"] == "spool.erased"]
    assert skipped == [
        {**skipped[0], "event": "spool.erased", "tenant": guard.keys.pseudonym("acme")}
    ]
    assert guard.store.list_provenance("acme") == []
    assert _fingerprinted(guard, "acme") == 0
    assert "fingerprint.tenant-content" not in _shared_rules(guard, text)


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[Guard]:
    """A guard whose shared-sink checks wait at most 0.3 s for the index."""
    home = tmp_path / "impatient"
    home.mkdir()
    (home / "kairo-guard.toml").write_text("[limits]\nindex_wait_seconds = 0.3\n")
    with make_guard(home, pii_gate=False) as g:
        yield g


def test_when_another_indexer_holds_the_lock_and_lags_then_every_record_blocks_index_lagging(
    impatient: Guard,
) -> None:
    guard = impatient
    assert guard.settings.limits.index_wait_seconds == 0.3
    texts = _texts("lagging", 2)
    _ingest(guard, "acme", texts)
    records = [
        sealed_record(guard, {"text": t}, data_class="operator_public") for t in _texts("public", 4)
    ]
    sink = guard.resolve_sink("corpus", kind="shared-training")
    with indexer_lock(guard.spool_directory, wait=True) as held:  # another indexer, stuck
        assert held
        started = time.monotonic()
        report = guard.check(records, sink=sink, mode="filter")
        waited = time.monotonic() - started
    assert report.by_rule == {INDEX_LAGGING_RULE: len(records)}
    assert "behind ingestion" in report.violations[0].reason
    assert 0.3 <= waited < 5
    # once the lock is free the check indexes the spool itself and the records pass
    assert guard.check(records, sink=sink).ok
    assert _shared_rules(guard, texts[0]) == ["fingerprint.tenant-content"]


def test_when_the_spool_is_empty_then_a_held_lock_does_not_block_a_check(
    impatient: Guard,
) -> None:
    records = [sealed_record(impatient, {"text": "public note"}, data_class="operator_public")]
    with indexer_lock(impatient.spool_directory, wait=True):
        report = impatient.check(records, sink=impatient.resolve_sink("c", kind="shared-training"))
    assert report.ok


def test_when_a_body_is_indexed_then_its_seal_entry_has_the_request_and_only_a_pseudonym(
    guard: Guard,
) -> None:
    (digest,) = _ingest(guard, TENANT, _texts("entry", 1))
    guard.wait_indexed()
    guard.audit.flush()
    lines = (guard.settings.home / "audit" / "audit.jsonl").read_bytes().splitlines()
    (line,) = [x for x in lines if orjson.loads(x)["event"] == "seal"]
    entry = orjson.loads(line)
    assert entry["method"] == "POST"
    assert entry["path_sha256"] == hashlib.sha256(b"/documents/upload").hexdigest()[:32]
    assert entry["tenant"] == guard.keys.pseudonym(TENANT)
    assert entry["digest"] == digest
    assert entry["class"] == "customer_content"
    assert int(entry["fingerprints"]) > 0
    assert all(TENANT.encode() not in x for x in lines)  # no entry names the tenant
    # the accepted request is audited once, by this entry: no request entry of its own
    assert not [x for x in lines if orjson.loads(x)["event"] == "request"]


def test_when_the_indexer_runs_as_a_thread_then_the_spool_drains_without_a_check(
    guard: Guard,
) -> None:
    spool = IngestSpool(guard, writer="thread", indexer="thread")
    body = orjson.dumps({"text": prose("thread-indexer", paragraphs=1)})

    async def run() -> str:
        digest, _ = await spool.record("acme", [body], "http", b"POST /documents")
        deadline = time.monotonic() + 10
        while not guard.store.list_provenance("acme") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return digest

    try:
        digest = asyncio.run(run())
    finally:
        spool.close()
    assert [row.digest for row in guard.store.list_provenance("acme")] == [digest]
    assert backlog(guard.spool_directory).pending_bytes == 0


def _indexer_children() -> list[int]:
    return child_pids(os.getpid(), b"kairo_guard.ingest.indexer_main")


def test_when_the_indexer_runs_as_a_process_then_it_is_idle_priority_and_drains_the_spool(
    tmp_path: Path,
) -> None:
    # a guard with an explicit key ring and no key file: the child gets the ring
    with make_guard(tmp_path / "state", pii_gate=False) as guard:
        spool = IngestSpool(guard, writer="thread", indexer="process")
        body = orjson.dumps({"text": prose("process-indexer", paragraphs=1)})

        async def run() -> tuple[str, list[int]]:
            digest, _ = await spool.record("acme", [body], "http", b"POST /documents")
            deadline = time.monotonic() + 30
            while not guard.store.list_provenance("acme") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return digest, _indexer_children()

        try:
            digest, children = asyncio.run(run())
            (child,) = children
            assert os.sched_getscheduler(child) == os.SCHED_IDLE
            assert _io_class(child) in (IOPRIO_CLASS_IDLE, None)  # None: not Linux x86/arm
            # the service's session, so its scheduler autogroup (a session of its own
            # would be weighed against the service as an equal), and its own group
            assert os.getsid(child) == os.getsid(0)
            assert os.getpgid(child) == child
        finally:
            spool.close()
        assert [row.digest for row in guard.store.list_provenance("acme")] == [digest]
        assert not os.path.exists(f"/proc/{child}/cmdline") or child not in _indexer_children()


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no autogroups")
def test_when_an_indexer_leads_its_own_session_then_its_autogroup_is_niced() -> None:
    """Run under setsid (a supervisor's choice), the indexer's autogroup would compete
    with the service as an equal: it lowers that group's weight. One that shares a
    session (the service's child) leaves the session's group alone."""
    code = (
        "import os, sys; from kairo_guard.ingest.indexer_main import _lowest_priority; "
        "_lowest_priority(); sys.stdout.write(open('/proc/self/autogroup').read())"
    )
    ours = Path("/proc/self/autogroup").read_text()
    led = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        start_new_session=True,
    )  # fmt: skip
    shared = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert led.stdout.split()[-2:] == ["nice", "19"]
    # a group of its own, named; a process never under setsid reads "" (the root group,
    # unnamed, whose weight cannot be set)
    assert led.stdout.startswith("/autogroup-")
    assert led.stdout.split()[0] != (ours.split() or [""])[0]
    assert shared.stdout == ours == Path("/proc/self/autogroup").read_text()


IOPRIO_CLASS_IDLE = 3


def _io_class(pid: int) -> int | None:
    """The I/O scheduling class of ``pid`` (ioprio_get), None where unknown here."""
    number = {"x86_64": 252, "aarch64": 31}.get(platform.machine())
    if number is None:
        return None
    value = ctypes.CDLL(None, use_errno=True).syscall(number, 1, pid)  # IOPRIO_WHO_PROCESS
    assert value >= 0, os.strerror(ctypes.get_errno())
    return int(value) >> 13


def _bodies(n: int, start: int = 0) -> list[bytes]:
    return [
        encode_body("acme", "", b'{"text": "memo %d %s"}' % (i, b"w" * 1000))
        for i in range(start, start + n)
    ]


def _spooled(
    guard: Guard, monkeypatch: pytest.MonkeyPatch, n: int
) -> tuple[SegmentAppender, SpoolIndexer]:
    """``n`` bodies of about 1 KiB spooled; the guard's indexer reading 4 KiB a batch."""
    appender = SegmentAppender(guard.spool_directory)
    assert appender.append(_bodies(n)) is None
    indexer = guard.indexer
    monkeypatch.setattr(indexer, "_batch_bytes", 4096)
    return appender, indexer


def test_a_bounded_pass_indexes_about_its_budget_and_leaves_the_rest_for_the_next(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the indexer process asks its pacing again between passes of 32 MiB at most, so a
    # burst of ingestion that starts during a long catch-up defers the rest
    appender, indexer = _spooled(guard, monkeypatch, 100)
    first = indexer.pass_once(max_bytes=20_000)
    assert 10 <= first < 40
    assert backlog(guard.spool_directory).pending_bytes > 0
    assert first + indexer.drain() == 100
    appender.close()


def test_a_pass_indexes_a_segment_up_to_its_size_when_it_started(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a segment still written at line rate is not chased: the pass ends, and pacing
    # decides about what came since
    appender, indexer = _spooled(guard, monkeypatch, 10)
    commit = indexer._commit
    written = [0]

    def commit_while_ingesting(records: list[SpoolRecord]) -> None:
        commit(records)
        if written[0] < 200:  # each batch indexed, more arrives
            assert appender.append(_bodies(2, 1000 + written[0])) is None
            written[0] += 2

    monkeypatch.setattr(indexer, "_commit", commit_while_ingesting)
    indexed = indexer.pass_once()
    assert 10 <= indexed <= 14  # at most its last batch (4 KiB here) past the start size
    assert written[0] < 200
    appender.close()
