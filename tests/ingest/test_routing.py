"""The route table: the route path as Starlette computes it, prefixes, templates, and
the paths it cannot be sure about."""

from __future__ import annotations

from typing import Any

import pytest
from starlette._utils import get_route_path

from kairo_guard import Guard
from kairo_guard.core.sinks import Sink
from kairo_guard.ingest.routing import (
    AMBIGUOUS,
    NO_ROUTE,
    RouteMatch,
    RouteTable,
    canonical_path,
    route_path,
)


def _scope(path: str, root_path: str = "", raw_path: bytes | None = None) -> dict[str, Any]:
    raw = path.encode() if raw_path is None else raw_path
    return {"type": "http", "path": path, "root_path": root_path, "raw_path": raw}


@pytest.mark.parametrize(
    ("path", "root_path"),
    [
        ("/train", ""),
        ("/api/train", "/api"),
        ("/train", "/api"),  # a server that leaves the root path out of the path
        ("/apix/train", "/api"),
        ("/api", "/api"),
        ("/api/", "/api"),
        ("/api/api/train", "/api"),
        ("/api/train", "/api/"),
    ],
)
def test_when_computing_the_route_path_then_it_is_the_one_starlette_routes_on(
    path: str, root_path: str
) -> None:
    scope = _scope(path, root_path)
    assert route_path(scope) == get_route_path(scope)


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("/train", "/train"),
        ("//train//examples/", "/train/examples"),
        ("/a/./b/../train", "/a/train"),
        ("/../../train", "/train"),
        ("/train%2Fexamples", "/train/examples"),
        ("/train%252Fexamples", "/train/examples"),
        ("\\train\\examples", "/train/examples"),
        ("", "/"),
    ],
)
def test_when_a_path_is_normalized_then_escapes_separators_and_dot_segments_are_resolved(
    path: str, canonical: str
) -> None:
    assert canonical_path(path) == canonical


@pytest.fixture
def sinks(guard: Guard) -> dict[str, Sink]:
    return {
        "train": guard.resolve_sink("router-train", kind="shared-training"),
        "eval": guard.resolve_sink("router-eval", kind="shared-eval"),
    }


def test_when_sink_routes_are_prefixes_then_the_longest_declared_one_wins(
    sinks: dict[str, Sink],
) -> None:
    table = RouteTable({"/train": sinks["train"], "/train/eval": sinks["eval"]})
    assert table.match(_scope("/train"), "/train") == RouteMatch(sinks["train"])
    assert table.match(_scope("/train/x/y"), "/train/x/y") == RouteMatch(sinks["train"])
    assert table.match(_scope("/train/eval/1"), "/train/eval/1") == RouteMatch(sinks["eval"])
    assert table.match(_scope("/training"), "/training") is NO_ROUTE
    everything = RouteTable({"/": sinks["train"]})
    assert everything.match(_scope("/any/path"), "/any/path") == RouteMatch(sinks["train"])


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v1/models/acme-ft/infer", "acme-ft"),
        ("/v1/models/org/Acme-FT/infer", "org/Acme-FT"),
        ("/v2/chat/acme-ft", "acme-ft"),
        ("/v1/models/infer", None),
        ("/v1/models/acme-ft", None),
        ("/x/acme-ft", "acme-ft"),
    ],
)
def test_when_a_path_fills_a_model_template_then_the_model_id_is_what_lies_between(
    path: str, model: str | None
) -> None:
    table = RouteTable({}, ["/v1/models/{model_id}/infer", "/v2/chat/{model_id}", "/x/{model_id}"])
    assert table.match(_scope(path), path).model == model


def test_when_a_route_is_written_as_the_full_path_then_it_holds_under_the_root_path(
    sinks: dict[str, Sink],
) -> None:
    table = RouteTable({"/api/train": sinks["train"]}, ["/api/v1/{model_id}/infer"])
    scope = _scope("/api/train", "/api")
    assert table.match(scope, route_path(scope)) == RouteMatch(sinks["train"])
    scope = _scope("/api/v1/m/infer", "/api")
    assert table.match(scope, route_path(scope)).model == "m"


def test_when_each_spelling_reaches_another_kind_of_route_then_both_are_checked(
    sinks: dict[str, Sink],
) -> None:
    table = RouteTable({"/v1": sinks["train"]}, ["/api/v1/{model_id}/infer"])
    scope = _scope("/api/v1/m/infer", "/api")
    assert table.match(scope, route_path(scope)) == RouteMatch(sinks["train"], "m")


def test_when_a_model_template_ends_with_a_slash_then_the_slash_is_ignored() -> None:
    table = RouteTable({}, ["/v1/{model_id}/"])
    assert table.match(_scope("/v1/m"), "/v1/m") == RouteMatch(None, "m")


def test_when_the_two_spellings_reach_different_sinks_then_the_route_is_ambiguous(
    sinks: dict[str, Sink],
) -> None:
    table = RouteTable({"/train": sinks["train"], "/api/train": sinks["eval"]})
    scope = _scope("/api/train", "/api")
    assert table.match(scope, route_path(scope)) is AMBIGUOUS


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("//other", None),
        ("/other/", None),
        ("/OTHER", None),
        ("/other/x", b"/other%2Fx"),
    ],
)
def test_when_an_odd_path_reaches_no_guarded_route_then_nothing_is_refused(
    sinks: dict[str, Sink], path: str, raw_path: bytes | None
) -> None:
    table = RouteTable({"/train": sinks["train"]}, ["/v1/{model_id}/infer"])
    assert table.match(_scope(path, raw_path=raw_path), path) is NO_ROUTE


def test_when_a_declared_route_is_upper_case_then_only_its_exact_spelling_is_sure(
    sinks: dict[str, Sink],
) -> None:
    table = RouteTable({"/Train": sinks["train"]})
    assert table.match(_scope("/Train"), "/Train") == RouteMatch(sinks["train"])
    assert table.match(_scope("/train"), "/train") is AMBIGUOUS


@pytest.mark.parametrize(
    ("sink_routes", "model_routes"),
    [
        (["train"], []),
        (["/train//x"], []),
        (["/a/../train"], []),
        (["/train%2Fx"], []),
        ([], ["/v1/models/infer"]),
        ([], ["/v1/{model_id}/{model_id}"]),
        ([], ["v1/{model_id}"]),
        ([], ["/v1//{model_id}"]),
    ],
)
def test_when_a_declared_route_is_not_a_canonical_path_then_value_error(
    sinks: dict[str, Sink], sink_routes: list[str], model_routes: list[str]
) -> None:
    with pytest.raises(ValueError, match="route"):
        RouteTable(dict.fromkeys(sink_routes, sinks["train"]), model_routes)
