"""A route written as the full path (root path in front) is judged like one written as
the route path: a spelling it cannot be sure of is refused, not let through."""

from __future__ import annotations

from typing import Any

import pytest

from kairo_guard import Guard
from kairo_guard.core.sinks import Sink
from kairo_guard.ingest.routing import AMBIGUOUS, RouteMatch, RouteTable, route_path


def _match(table: RouteTable, path: str, raw_path: bytes | None = None) -> RouteMatch:
    raw = path.encode() if raw_path is None else raw_path
    scope: dict[str, Any] = {"type": "http", "path": path, "root_path": "/api", "raw_path": raw}
    return table.match(scope, route_path(scope))


@pytest.fixture
def table(guard: Guard) -> RouteTable:
    sink: Sink = guard.resolve_sink("full-path-train", kind="shared-training")
    return RouteTable({"/api/train": sink}, ["/api/v1/{model_id}/infer"])


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/api//train", None),
        ("/api/./train", None),
        ("/api/x/../train", None),
        ("/api/train/", None),
        ("/api/Train", None),
        ("/api/TRAIN/x", None),
        ("/api/train/x", b"/api/train%2Fx"),
        ("/api//v1/m/infer", None),
        ("/api/V1/m/infer", None),
    ],
)
def test_when_a_full_path_route_is_reached_by_an_odd_spelling_then_it_is_ambiguous(
    table: RouteTable, path: str, raw_path: bytes | None
) -> None:
    assert _match(table, path, raw_path) is AMBIGUOUS


def test_when_a_full_path_route_is_reached_as_written_then_it_matches(
    table: RouteTable,
) -> None:
    assert _match(table, "/api/train/x").sink is not None
    assert _match(table, "/api/v1/m/infer").model == "m"
    assert _match(table, "/api/other").sink is None


def test_when_the_route_path_spelling_is_sure_and_the_full_one_is_not_then_ambiguous(
    guard: Guard,
) -> None:
    sink = guard.resolve_sink("full-path-eval", kind="shared-eval")
    table = RouteTable({"/v1": sink, "/api/train": sink})
    assert _match(table, "/api/v1/x", b"/api/v1/x") == RouteMatch(sink)
    assert _match(table, "/api/Train") is AMBIGUOUS
