"""Two sink routes that differ only by a trailing '/' are one route: declared with two
different sinks, the table refuses them instead of keeping one sink silently."""

from __future__ import annotations

import pytest

from kairo_guard import Guard
from kairo_guard.ingest.routing import RouteMatch, RouteTable


def test_when_one_route_is_declared_twice_with_two_sinks_then_value_error(guard: Guard) -> None:
    shared = guard.resolve_sink("twice-shared", kind="shared-training")
    own = guard.resolve_sink("twice-acme", kind="tenant-fine-tune:acme")
    with pytest.raises(ValueError, match="/train"):
        RouteTable({"/train/": shared, "/train": own})


def test_when_one_route_is_declared_twice_with_one_sink_then_it_holds(guard: Guard) -> None:
    shared = guard.resolve_sink("twice-shared", kind="shared-training")
    table = RouteTable({"/train/": shared, "/train": shared})
    scope = {"type": "http", "path": "/train", "root_path": "", "raw_path": b"/train"}
    assert table.match(scope, "/train") == RouteMatch(shared)
