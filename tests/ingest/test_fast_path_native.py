"""The native gate (``_gate.c``) and the Python ``FastPath.admit_python`` make the same
decision on every request: the same scopes, hostile ones included, go to both, through
one real middleware, its real key cache and route table, a real trace context, a
recording SDK tracer and a spool over its backlog limit.
"""

from __future__ import annotations

import importlib.util
import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from kg_testing import make_guard
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider

from kairo_guard.core.keys import KeyRing
from kairo_guard.ingest import fast_path
from kairo_guard.ingest.apikeys import ApiKeyVerifier, new_api_key
from kairo_guard.ingest.fast_path import FastPath
from kairo_guard.ingest.middleware import GuardMiddleware

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("kairo_guard.ingest._gate") is None, reason="the gate was not built"
)

SIZE = b"120"


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _middleware(home: Path, ring: KeyRing, **guard_args: Any) -> tuple[GuardMiddleware, str]:
    guard = make_guard(home, ring=ring, pii_gate=False, **guard_args)
    key = new_api_key(guard.store, "acme")
    assert guard.settings.tenant_header  # (a credential header the gate refuses)
    app = GuardMiddleware(
        _app,
        guard=guard,
        indexer="none",
        sink_routes={"/train": guard.resolve_sink("router-train", kind="shared-training")},
        public_paths=["/healthz"],
        model_routes=["/v1/models/{model_id}/infer"],
    )
    assert app._verifier is not None
    assert app._verifier.verify(key) == "acme"  # cached now
    return app, key


def _scope(path: str, headers: Any, **extra: Any) -> dict[str, Any]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
    }
    scope.update(extra)
    return scope


def _header_sets(key: str) -> list[Any]:
    bearer = f"Bearer {key}".encode()
    auth, size = (b"authorization", bearer), (b"content-length", SIZE)
    host = (b"host", b"service")
    sets: list[Any] = [
        [host, auth, size],
        [size, auth],
        (auth, size),  # a tuple of headers
        [auth, size, (b"authorization", bearer)],
        [auth, size, (b"content-length", SIZE)],
        [auth],
        [size],
        [],
        None,
        "not headers",
        [(b"authorization", bearer, b"extra"), size],
        [[b"authorization", bearer], size],  # a list, not a tuple
        [("authorization", bearer), size],  # a str name
        [(b"authorization", bearer.decode()), size],
        [(b"Authorization", bearer), size],  # ASGI names are lower case: not ours
        [(b"authorization", b"Bearer  " + key.encode() + b" \t"), size],
        [(b"authorization", b"Bearer\t" + key.encode()), size],
        [(b"authorization", b"bearer " + key.encode()), size],
        [(b"authorization", b"Bearer " + key.encode()[:-1] + b"A"), size],
        [(b"authorization", b"Bearer " + key.encode() + b"\xe9"), size],
        [(b"authorization", b"Bearer "), size],
        [(b"authorization", b"Bearer"), size],
    ]
    for length in (b"0", b"1", b"00120", b"-1", b"+1", b"1 ", b" 1", b"1e3", b"", b"\xd9\xa1",
                   b"1048576", b"1048577", b"9" * 18, b"9" * 19, b"9" * 40):  # fmt: skip
        sets.append([auth, (b"content-length", length)])
    for name in (b"traceparent", b"baggage", b"x-api-key", b"x-kairo-tenant", b"cookie"):
        sets.append([auth, size, (name, b"x")])
    return sets


PATHS = ["/documents", "/train", "/train/x", "/healthz", "/documents/", "//documents",
         "/v1/models/m1/infer", "/Train", "/%74rain", "", "/docs/../train"]  # fmt: skip


def _decisions(app: GuardMiddleware, scopes: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    fast = app._fast
    assert fast is not None
    return [(fast.admit(s), fast.admit_python(s)) for s in scopes]


def _all_scopes(key: str) -> list[dict[str, Any]]:
    scopes = [_scope(p, h) for p, h in itertools.product(PATHS, _header_sets(key))]
    good = _header_sets(key)[0]
    scopes += [
        _scope("/documents", good, root_path="/api"),
        _scope("/api/documents", good, root_path="/api"),
        _scope("/api/train", good, root_path="/api"),
        _scope("/documents", good, raw_path=None),
        {**_scope("/documents", good), "path": None},
        _scope("/documents", good, root_path=["unhashable"]),
    ]
    scopes.append({"type": "http", "path": "/documents"})  # no headers at all
    return scopes


def test_the_gate_and_python_agree_on_every_request(tmp_path: Path, ring: KeyRing) -> None:
    app, key = _middleware(tmp_path / "state", ring)
    fast = app._fast
    assert fast is not None
    decisions = [(fast.admit(s), _python_admit_or_error(app, s)) for s in _all_scopes(key)]
    # where a hostile scope breaks Python's checks (the middleware then fails the
    # request), the gate hands it to the general path, which fails closed
    assert [n for n, _ in decisions] == [
        None if isinstance(p, Exception) else p for _, p in decisions
    ]
    admitted = [n for n, _ in decisions if n is not None]
    assert admitted  # the plain ones are admitted: the test is not vacuous
    assert {size for _, size in admitted} == {1, 120, 1 << 20}  # 120 as "00120" too


def _python_admit_or_error(app: GuardMiddleware, scope: dict[str, Any]) -> Any:
    assert app._fast is not None
    try:
        return app._fast.admit_python(scope)
    except Exception as exc:  # a hostile scope may break Python's checks
        return exc


def test_neither_admits_while_a_trace_context_is_current(tmp_path: Path, ring: KeyRing) -> None:
    app, key = _middleware(tmp_path / "state", ring)
    scope = _scope("/documents", _header_sets(key)[0])
    assert _decisions(app, [scope]) == [(("acme", 120), ("acme", 120))]
    parent = trace.NonRecordingSpan(
        trace.SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True)
    )
    token = context.attach(trace.set_span_in_context(parent))
    try:
        assert _decisions(app, [scope]) == [(None, None)]
    finally:
        context.detach(token)


def test_neither_admits_while_the_guard_records_spans(tmp_path: Path, ring: KeyRing) -> None:
    app, key = _middleware(tmp_path / "state", ring, tracer_provider=TracerProvider())
    assert _decisions(app, [_scope("/documents", _header_sets(key)[0])]) == [(None, None)]


def test_neither_admits_while_the_spool_is_over_its_limit(tmp_path: Path, ring: KeyRing) -> None:
    app, key = _middleware(tmp_path / "state", ring)
    scope = _scope("/documents", _header_sets(key)[0])
    app.spool.backlog_bytes = app.spool.max_backlog + 1
    app.spool._backlog_at = time.monotonic() + 3600  # measured: kept for the test
    assert _decisions(app, [scope]) == [(None, None)]


@pytest.mark.parametrize("recheck", [30.0, 0.05])
def test_the_gate_asks_about_tracing_and_backlog_at_most_every_recheck(
    tmp_path: Path, ring: KeyRing, monkeypatch: pytest.MonkeyPatch, recheck: float
) -> None:
    monkeypatch.setattr(fast_path, "BUSY_RECHECK", recheck)
    app, key = _middleware(tmp_path / "state", ring)
    fast = app._fast
    assert fast is not None
    scope = _scope("/documents", _header_sets(key)[0])
    assert fast.admit(scope) == ("acme", 120)
    app.spool.backlog_bytes = app.spool.max_backlog + 1
    app.spool._backlog_at = time.monotonic() + 3600  # measured: kept for the test
    assert fast.admit_python(scope) is None  # Python asks on every request
    if recheck > 1:  # the gate's last answer still holds
        assert fast.admit(scope) == ("acme", 120)
    else:  # past the recheck interval the gate asks again
        time.sleep(recheck * 2)
        assert fast.admit(scope) is None


def test_the_gate_asks_a_runtime_context_of_another_kind(
    tmp_path: Path, ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Other:  # an OTEL_PYTHON_CONTEXT runtime: only get_current is known
        def __init__(self) -> None:
            self.current: Any = context.Context()

        def get_current(self) -> Any:
            return self.current

    other = Other()
    monkeypatch.setattr(context, "_RUNTIME_CONTEXT", other)
    assert fast_path._current_context_var() is None
    app, key = _middleware(tmp_path / "state", ring)
    scope = _scope("/documents", _header_sets(key)[0])
    assert _decisions(app, [scope]) == [(("acme", 120), ("acme", 120))]
    other.current = context.Context({"a-key": "a value"})
    assert _decisions(app, [scope]) == [(None, None)]


def test_a_revoked_key_stops_being_admitted_at_once_by_both(tmp_path: Path, ring: KeyRing) -> None:
    app, key = _middleware(tmp_path / "state", ring)
    scope = _scope("/documents", _header_sets(key)[0])
    assert _decisions(app, [scope]) == [(("acme", 120), ("acme", 120))]
    app.guard.store.revoke_api_keys("acme", now=time.time(), key_id=None)  # a new generation
    assert _decisions(app, [scope]) == [(None, None)]


@pytest.mark.parametrize("way", ["native", "python"])
def test_a_key_past_its_second_is_not_admitted_and_one_near_it_is_read_again(
    tmp_path: Path, ring: KeyRing, way: str
) -> None:
    app, key = _middleware(tmp_path / "state", ring)
    now = [time.monotonic()]
    verifier = ApiKeyVerifier(app.guard.store, clock=lambda: now[0])
    assert verifier.verify(key) == "acme"
    fast = FastPath(verifier, app.routes, app.spool, app.guard.telemetry, (), 1 << 20)
    admit = fast.admit if way == "native" else fast.admit_python
    scope = _scope("/documents", _header_sets(key)[0])
    (fingerprint,) = verifier._cache
    fresh = verifier._cache[fingerprint].fresh
    now[0] = fresh - 0.05  # inside the refresh-ahead window: served, and read again
    assert admit(scope) == ("acme", 120)
    for _ in range(200):  # the refresh runs in the verifier's thread
        if verifier._cache[fingerprint].fresh > fresh:
            break
        time.sleep(0.01)
    assert verifier._cache[fingerprint].fresh == pytest.approx(now[0] + 1.0)
    now[0] += 1.01  # past the refreshed second: no longer admitted
    assert admit(scope) is None


def test_the_route_cache_is_bounded(tmp_path: Path, ring: KeyRing) -> None:
    app, key = _middleware(tmp_path / "state", ring)
    fast = app._fast
    assert fast is not None
    headers = _header_sets(key)[0]
    for i in range(fast_path.ROUTE_CACHE_SIZE + 10):
        assert fast.admit(_scope(f"/documents/{i}", headers)) == ("acme", 120)
    assert len(fast._plain) <= fast_path.ROUTE_CACHE_SIZE
    assert fast.admit(_scope("/train", headers)) is None  # still judged after a clear
