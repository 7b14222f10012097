"""The native door serves the admitted request as the middleware's Python steps do, and
keeps asyncio's promises while it stands in for a future: a cancelled wait ends the
request, a completion from another thread resumes it through the loop, the app's
exceptions and cancellations come out with the tenant context reset and the request
counted and audited.

The real native writer is used wherever the test can wait for it; two tests need a
writer that completes only when the test says so (never, or from another thread), a
double of the C writer's two members the door uses (``submit``, ``queued_bytes``).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import os
import signal
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from kg_testing import make_guard
from otel_support import Sdk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard, current_tenant
from kairo_guard.core.exceptions import StoreError
from kairo_guard.core.keys import KeyRing
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.door import GENERAL, SERVED
from kairo_guard.ingest.middleware import SCOPE_KEY, GuardMiddleware
from kairo_guard.otel import instrumentation
from kairo_guard.otel.names import (
    ATTR_DECISION,
    ATTR_SOURCE,
    ATTR_STATUS,
    METRIC_BYTES,
    METRIC_REQUESTS,
)
from kairo_guard.store.spool import read_segment, segments

BODY = b'{"text": "Acme plans a second warehouse in Braga and forty new hires in May."}'
CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="none")


def _app(guard: Guard, seen: list[Any]) -> GuardMiddleware:
    async def documents(request: Request) -> JSONResponse:
        body = await request.body()
        seen.append((current_tenant(), CALLER.get(), request.scope[SCOPE_KEY]))
        if request.headers.get("x-fail") == "raise":
            raise RuntimeError("the app failed")
        if request.headers.get("x-fail") == "sleep":
            await asyncio.sleep(30)
        status = 422 if request.headers.get("x-fail") == "422" else 200
        return JSONResponse({"sha256": hashlib.sha256(body).hexdigest()}, status_code=status)

    app = Starlette(routes=[Route("/documents", documents, methods=["POST"])])
    return GuardMiddleware(app, guard=guard, indexer="none")


def _scope(key: str, *extra: tuple[bytes, bytes]) -> dict[str, Any]:
    headers = [
        (b"authorization", f"Bearer {key}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        *extra,
    ]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/documents", "raw_path": b"/documents", "root_path": "",
        "query_string": b"", "headers": headers, "client": ("127.0.0.1", 5), "server": None,
    }  # fmt: skip


async def _request(app: GuardMiddleware, scope: dict[str, Any]) -> list[MutableMapping[str, Any]]:
    messages = [{"type": "http.request", "body": BODY, "more_body": False}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.fixture
def served(guard: Guard) -> tuple[GuardMiddleware, str, list[Any]]:
    key = new_api_key(guard.store, "acme")
    seen: list[Any] = []
    app = _app(guard, seen)
    assert app._door is not None  # CI builds it (hatch_build.py)
    asyncio.run(_request(app, _scope(key)))  # the key verified: later requests are admitted
    seen.clear()
    return app, key, seen


def _sealed(guard: Guard) -> tuple[str, str]:
    """BODY's digest and the seal the writer would give it."""
    digest = hashlib.sha256(BODY).hexdigest()
    return digest, guard.sealer.seal_spooled(digest, tenant="acme", source="http")


def _answered_with(sent: list[MutableMapping[str, Any]], seal: str) -> None:
    """The app answered 200 and the door added the body's seal to its headers."""
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"kairo-provenance"] == seal.encode()


def _audited(guard: Guard) -> list[dict[str, Any]]:
    guard.audit.flush()
    return [orjson.loads(line) for line in guard.audit.path.read_bytes().splitlines()]


def test_the_door_and_the_python_steps_answer_the_same(
    guard: Guard, served: tuple[GuardMiddleware, str, list[Any]]
) -> None:
    app, key, seen = served
    results = []
    for door in (app._door, None):
        app._door = door
        token = CALLER.set("the caller's task")
        try:  # the caller's context reaches the app through the door's direct resume
            sent = asyncio.run(_request(app, _scope(key)))
        finally:
            CALLER.reset(token)
        seal = dict(sent[0]["headers"])[b"kairo-provenance"].decode()
        label = guard.open_seal(seal)
        tenant, caller, provenance = seen.pop()
        results.append(
            (
                sent[0]["status"], sent[1]["body"], label.tenant, label.digest, tenant, caller,
                provenance.tenant, provenance.size, provenance.digest, provenance.complete,
                provenance.seal == seal, current_tenant(),
            )
        )  # fmt: skip
    digest = hashlib.sha256(BODY).hexdigest()
    expected = (200, b'{"sha256":"%s"}' % digest.encode(), "acme", digest, "acme")
    assert results[0][:5] == expected
    assert results[0][5:] == ("the caller's task", "acme", len(BODY), digest, True, True, None)
    assert results[0] == results[1]


@pytest.mark.parametrize("how", ["raise", "422", "sleep"])
def test_when_the_app_fails_then_the_context_is_reset_and_the_request_audited(
    guard: Guard, served: tuple[GuardMiddleware, str, list[Any]], how: str
) -> None:
    app, key, seen = served
    counted: list[tuple[str, int, int | None]] = []
    count = guard.telemetry.count_request

    def counting(decision: str, status: int, size: int | None) -> None:
        counted.append((decision, status, size))
        count(decision, status, size)

    guard.telemetry.count_request = counting  # type: ignore[method-assign]
    app._door = app.make_door()  # (the door holds the counter it was made with)

    async def run() -> Any:
        task = asyncio.ensure_future(_request(app, _scope(key, (b"x-fail", how.encode()))))
        if how == "sleep":  # cancelled while the app waits: thrown through the door
            while not seen:
                await asyncio.sleep(0.01)
            task.cancel()
        try:
            return await task
        except BaseException as exc:  # what came out is the result
            return exc
        finally:
            assert current_tenant() is None

    outcome = asyncio.run(run())
    assert seen[0][0] == "acme"
    if how == "raise":
        assert isinstance(outcome, RuntimeError)
    elif how == "sleep":
        assert isinstance(outcome, asyncio.CancelledError)
    else:
        assert outcome[0]["status"] == 422
    status = {"422": 422, "raise": 500}.get(how)  # (Starlette answers 500, then raises)
    assert counted == [("deny", status or 0, len(BODY))]
    entry = _audited(guard)[-1]
    assert (entry["event"], entry["status"], entry["digest"]) == (
        "request", status, hashlib.sha256(BODY).hexdigest())  # fmt: skip


class _HeldWriter:
    """A writer that completes only when told (the C writer's members the door uses)."""

    queued_bytes = 0

    def __init__(self) -> None:
        self.futures: list[Any] = []

    def submit(self, future: Any, *_: Any) -> None:
        self.futures.append(future)

    @classmethod
    def serving(cls, app: GuardMiddleware) -> _HeldWriter:
        """A held writer that ``app``'s door submits to from now on."""
        held = cls()
        app.spool.native_writer = lambda loop: held  # type: ignore[method-assign]
        app._door = app.make_door()
        return held

    async def first(
        self, app: GuardMiddleware, key: str
    ) -> asyncio.Future[list[MutableMapping[str, Any]]]:
        """A request started, once its body is submitted."""
        task = asyncio.ensure_future(_request(app, _scope(key)))
        while not self.futures:
            await asyncio.sleep(0)
        return task


class _InstantWriter:
    """A writer that completes every body as it is submitted, with a given result."""

    queued_bytes = 0

    def __init__(self, digest: str, seal: str) -> None:
        self.result = (digest, seal)

    def submit(self, future: Any, *_: Any) -> None:
        future.set_result(self.result)

    @classmethod
    def serving(cls, app: GuardMiddleware, digest: str, seal: str) -> Any:
        """Make ``app``'s door submit to an instant writer from now on; return the door."""
        instant = cls(digest, seal)
        app.spool.native_writer = lambda loop: instant  # type: ignore[method-assign]
        app._door = app.make_door()
        assert app._door is not None
        return app._door


def test_when_the_request_is_cancelled_while_its_body_is_made_durable_then_the_app_never_runs(
    guard: Guard, served: tuple[GuardMiddleware, str, list[Any]]
) -> None:
    app, key, seen = served
    held = _HeldWriter.serving(app)

    async def run() -> None:
        task = await held.first(app, key)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        admission = held.futures[0]
        assert admission.done()
        assert admission.cancelled()
        assert admission.cancel() is False
        with pytest.raises(asyncio.InvalidStateError):  # the writer's late answer: ignored
            admission.set_result(("0" * 64, "seal"))

    asyncio.run(run())
    assert seen == []


def test_when_the_body_is_made_durable_on_another_thread_then_the_task_resumes_on_its_loop(
    guard: Guard, served: tuple[GuardMiddleware, str, list[Any]]
) -> None:
    app, key, seen = served
    held = _HeldWriter.serving(app)
    digest, seal = _sealed(guard)

    async def run() -> list[MutableMapping[str, Any]]:
        task = await held.first(app, key)
        loop_thread = threading.get_ident()
        ran_on: list[int] = []
        original = asyncio.get_running_loop().call_soon_threadsafe

        def noted(*args: Any, **kwargs: Any) -> Any:
            ran_on.append(threading.get_ident())
            return original(*args, **kwargs)

        asyncio.get_running_loop().call_soon_threadsafe = noted  # type: ignore[method-assign,assignment]
        other = threading.Thread(target=held.futures[0].set_result, args=((digest, seal),))
        other.start()
        other.join()
        sent = await asyncio.wait_for(task, 10)
        assert ran_on
        assert loop_thread not in ran_on
        return sent

    _answered_with(asyncio.run(run()), seal)
    assert seen[0][0] == "acme"


def test_when_the_writer_completes_the_body_as_it_is_submitted_then_the_app_runs_at_once(
    guard: Guard, served: tuple[GuardMiddleware, str, list[Any]]
) -> None:
    app, key, seen = served
    digest, seal = _sealed(guard)
    _InstantWriter.serving(app, digest, seal)
    _answered_with(asyncio.run(_request(app, _scope(key))), seal)
    assert seen[0][2].digest == digest


def test_when_the_body_is_made_durable_while_its_loop_is_stopped_then_the_task_waits_for_it(
    guard: Guard, served: tuple[GuardMiddleware, str, list[Any]]
) -> None:
    app, key, seen = served
    held = _HeldWriter.serving(app)
    digest, seal = _sealed(guard)
    loop = asyncio.new_event_loop()
    try:
        task = loop.run_until_complete(held.first(app, key))
        # the loop's own thread, the loop not running (a writer closed after it stopped)
        held.futures[0].set_result((digest, seal))
        assert seen == []  # not stepped outside its loop
        sent = loop.run_until_complete(asyncio.wait_for(task, 10))
    finally:
        loop.close()
    _answered_with(sent, seal)
    assert seen[0][0] == "acme"


@pytest.mark.parametrize("error", [StoreError("the disk is gone"), RuntimeError("a bug")])
def test_when_the_spool_cannot_give_a_writer_then_the_app_never_runs(
    served: tuple[GuardMiddleware, str, list[Any]], error: Exception
) -> None:
    app, key, seen = served

    def no_writer(loop: Any) -> Any:
        raise error

    app.spool.native_writer = no_writer  # type: ignore[method-assign]
    app._door = app.make_door()
    if isinstance(error, StoreError):  # refused as a body the spool cannot take
        sent = asyncio.run(_request(app, _scope(key)))
        assert sent[0]["status"] == 503
    else:  # a fault, raised (the server answers 500), never a pass
        with pytest.raises(RuntimeError, match="a bug"):
            asyncio.run(_request(app, _scope(key)))
    assert seen == []


def test_when_the_process_forks_while_its_loop_runs_then_the_child_is_not_served_by_it(
    served: tuple[GuardMiddleware, str, list[Any]],
) -> None:
    # the door remembers the running loop and its writer without asking the system for
    # its pid; a child forked inside a running loop must not take them for its own
    app, key, seen = served

    async def run() -> int:
        await _request(app, _scope(key))  # the door now remembers this loop and writer
        pid = os.fork()
        if pid == 0:  # the child: asyncio no longer sees a running loop here
            code = 5
            signal.alarm(10)  # a request handed to the parent's writer would never end
            try:
                sent = await _request(app, _scope(key))
                code = 4 if sent and sent[0].get("status") == 200 else 6
            except RuntimeError:
                code = 3
            finally:
                os._exit(code)
        return os.waitpid(pid, 0)[1]

    status = asyncio.run(run())
    assert os.WIFEXITED(status)
    assert os.WEXITSTATUS(status) == 3  # refused as outside any loop, never served
    assert len(seen) == 1  # only the parent's request reached the app


def test_requests_the_door_serves_are_all_counted_in_the_metrics(
    tmp_path: Path, ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    # after its first request the door queues its counts itself (no Python frame) and
    # folds the queue when it is long: every request still reaches the meter's reader
    monkeypatch.setattr(instrumentation, "_FOLD_AT", 7)  # fold a few times on the way
    sdk = Sdk()  # its meter only: a recording tracer would send requests the general way
    home = tmp_path / "state"
    with make_guard(home, ring=ring, pii_gate=False, meter_provider=sdk.meter_provider) as guard:
        key = new_api_key(guard.store, "acme")
        seen: list[Any] = []
        app = _app(guard, seen)
        assert app._door is not None

        async def run() -> list[int]:
            statuses = []
            for i in range(40):
                extra = (b"x-fail", b"422") if i % 10 == 9 else (b"x-n", b"%d" % i)
                sent = await _request(app, _scope(key, extra))
                statuses.append(sent[0]["status"])
            return statuses

        statuses = asyncio.run(run())
        counted = {
            (attrs[ATTR_DECISION], attrs[ATTR_STATUS]): point.value
            for attrs, point in sdk.points(METRIC_REQUESTS)
        }
        scanned = [p.value for a, p in sdk.points(METRIC_BYTES) if a.get(ATTR_SOURCE) == "request"]
    assert len(seen) == 40
    assert statuses.count(422) == 4
    assert counted == {("allow", 200): 36, ("deny", 422): 4}
    assert scanned == [40 * len(BODY)]


def test_each_spooled_body_keeps_its_own_request_line(
    guard: Guard, served: tuple[GuardMiddleware, str, list[Any]]
) -> None:
    # the door remembers the request line per path: another method on the same path, or
    # another path, is its own line in the spool record (the indexer audits from it)
    app, key, _ = served
    sent_lines = [("POST", "/documents"), ("PUT", "/documents"), ("POST", "/documents"),
                  ("POST", "/dokumente/zoë")]  # fmt: skip

    async def run() -> None:
        for method, path in sent_lines:
            await _request(app, {**_scope(key), "method": method, "path": path})

    asyncio.run(run())
    records = [
        record
        for segment in segments(guard.spool_directory)
        for record in read_segment(segment, 0, 1 << 30).records
    ]
    assert [r.meta for r in records[-4:]] == [f"{m} {p}".encode() for m, p in sent_lines]


def test_the_doors_receive_and_send_refuse_wrong_calls_and_still_serve(
    guard: Guard, served: tuple[GuardMiddleware, str, list[Any]]
) -> None:
    # receive and send are the door's own callables: a wrong call is a TypeError (the
    # app's error), never a crash; called right they still serve the request
    app, key, _ = served
    errors: list[str] = []

    async def probing(scope: Any, receive: Any, send: Any) -> None:
        wrong_calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
            (receive, (1,), {}), (send, (), {}), (send, ({}, {}), {}),
            (send, (), {"message": {"type": "http.response.start"}}),
        ]  # fmt: skip
        for call, args, kwargs in wrong_calls:
            try:
                call(*args, **kwargs)
            except TypeError as exc:
                errors.append(str(exc))
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": message["body"]})

    app.app = probing
    sent = asyncio.run(_request(app, _scope(key)))
    assert len(errors) == 4
    assert sent[1]["body"] == BODY
    assert sent[0]["status"] == 200
    label = guard.open_seal(dict(sent[0]["headers"])[b"kairo-provenance"].decode())
    assert label.digest == hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize("how", ["await", "wait_for", "task"])
def test_the_replayed_body_reaches_the_app_however_it_awaits_receive(
    served: tuple[GuardMiddleware, str, list[Any]], how: str
) -> None:
    # the door's receive() returns its own awaitable: awaited directly, through
    # wait_for or as a task of its own, it gives the body message once
    app, key, _ = served
    got: list[Any] = []

    async def reading(scope: Any, receive: Any, send: Any) -> None:
        if how == "await":
            message = await receive()
        elif how == "wait_for":
            message = await asyncio.wait_for(receive(), 5)
        else:
            message = await asyncio.ensure_future(receive())
        got.append(message)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": message["body"]})

    app.app = reading
    sent = asyncio.run(_request(app, _scope(key)))
    assert got == [{"type": "http.request", "body": BODY, "more_body": False}]
    assert sent[1]["body"] == BODY


def test_an_admission_ends_with_the_same_outcome_awaited_or_stepped_by_hand(
    guard: Guard, served: tuple[GuardMiddleware, str, list[Any]]
) -> None:
    # `await` takes the outcome from am_send (no StopIteration); a driver stepping the
    # admission with send() gets it as StopIteration's value, as from any iterator
    app, key, seen = served
    door = _InstantWriter.serving(app, *_sealed(guard))
    bodies = {"served": [BODY], "general": [BODY[:10], BODY[10:]]}

    def admission(kind: str) -> Any:
        messages = [
            {"type": "http.request", "body": b, "more_body": i < len(bodies[kind]) - 1}
            for i, b in enumerate(bodies[kind])
        ]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: MutableMapping[str, Any]) -> None:
            pass

        return door.serve(_scope(key), receive, send, "acme", len(BODY))

    async def run() -> list[Any]:
        outcomes: list[Any] = []
        for kind in ("served", "general"):
            outcomes.append(await admission(kind))
            stepped = admission(kind)
            with pytest.raises(StopIteration) as stop:  # nothing here waits: one step
                stepped.send(None)
            outcomes.append(stop.value.value)
        return outcomes

    assert asyncio.run(run()) == [SERVED, SERVED, GENERAL, GENERAL]
    assert len(seen) == 2  # the app ran for the two served ones only
