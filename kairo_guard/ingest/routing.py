"""Which guarded route a request goes to, judged on the path the application routes on.

The matching rule of :class:`~kairo_guard.ingest.middleware.GuardMiddleware`:

- The **route path** is the path Starlette's router matches (its ``get_route_path``):
  ``scope["path"]`` without ``scope["root_path"]`` when the path starts with the root
  path followed by ``/``, else the path itself. That covers uvicorn ``--root-path`` and
  a guarded app inside a ``Mount`` (both set ``root_path``; the path stays whole).
- An application that sets its own root path before routing (``FastAPI(root_path=...)``
  replaces the server's) is routed under that one: the middleware looks for it on the
  app it wraps, and on what that wraps (:func:`app_root_path`).
- Sink routes and model routes are written as the wrapped app's router sees them; a
  route written with the root path in front (the full path) holds too: a route that
  restricts counts under either spelling. Public paths (they allow) match the route
  path only, exactly.
- A sink route matches itself and every path below it (the longest wins); a model
  template ``head{model_id}tail`` matches a path that starts with ``head`` and ends with
  ``tail``, the model id being what lies between (``/`` included), exactly as written.
- **Unsure**: a route path that is not canonical (an empty, ``.`` or ``..`` segment, a
  trailing ``/``, a backslash, a ``%`` left after the server decoded it, or an encoded
  ``/``, ``\\`` or ``%`` in ``raw_path``) is ambiguous when it or its canonical form
  reaches a guarded route; so is a canonical path that reaches a guarded route only
  when letter case is ignored, or that reaches two different ones under its two
  spellings. The middleware refuses ambiguous requests (403, rule ``route.ambiguous``).

Everything is precomputed: a request costs a few dict lookups and string tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote

from kairo_guard.core.sinks import Sink

ROUTE_AMBIGUOUS = "route.ambiguous"
"""Rule id of a request whose route the middleware cannot be sure of."""

MODEL_PARAM = "{model_id}"
MAX_WRAPPED_APPS = 64
"""How many ``.app`` links :func:`app_root_path` follows (a cycle ends there)."""
_ENCODED_SEPARATORS = (b"%2f", b"%5c", b"%25")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class RouteMatch(NamedTuple):
    """The guarded routes a request reaches: a sink, a model id, or it is ambiguous."""

    sink: Sink | None = None
    model: str | None = None
    ambiguous: bool = False


NO_ROUTE = RouteMatch()
AMBIGUOUS = RouteMatch(ambiguous=True)


def route_path(scope: Mapping[str, Any], root: str | None = None) -> str:
    """Return the path the application routes on (Starlette's ``get_route_path``), under
    ``root`` in place of ``scope["root_path"]`` when given (:func:`app_root_path`)."""
    path: str = scope.get("path", "")
    if root is None:
        root = scope.get("root_path", "")
    if root and path.startswith(root):
        if path == root:
            return ""
        if path[len(root)] == "/":
            return path[len(root) :]
    return path


def app_root_path(app: object) -> str | None:
    """The root path ``app`` puts in the scope itself before it routes, replacing the
    server's (FastAPI's ``root_path``: ``FastAPI(root_path="/api")`` routes
    ``/api/train`` as ``/train``), found on ``app`` or on an app it wraps (``.app``, as
    ASGI middleware hold it); None when none does."""
    current: object = app
    for _ in range(MAX_WRAPPED_APPS):
        root = getattr(current, "root_path", None)
        if isinstance(root, str) and root:
            return root
        current = getattr(current, "app", None)
        if current is None:
            return None
    return None


def canonical_path(path: str) -> str:
    """Return ``path`` with ``%`` escapes decoded, ``\\`` as ``/``, and empty, ``.`` and
    ``..`` segments and a trailing ``/`` removed (the form a lenient router matches)."""
    text = path.replace("\\", "/")
    for _ in range(3):  # double-encoded escapes too; a bound, not a loop on input
        if "%" not in text:
            break
        text = unquote(text).replace("\\", "/")
    segments: list[str] = []
    for segment in text.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return "/" + "/".join(segments)


def _fold(path: str) -> str:
    # ASCII only, so positions stay put: a model id is cut from the unfolded path
    return path.lower() if path.isascii() else path.translate(_ASCII_LOWER)


def _first_segment(path: str) -> str:
    cut = path.find("/", 1)
    return path[:cut] if cut > 0 else path


_new_match = tuple.__new__  # RouteMatch without the keyword-default wrapper: per request


class _Lookup:
    """Sink prefixes in a dict; model templates by their first segment.

    Most paths cost one set lookup: only a path whose first segment starts a declared
    route is looked at further.
    """

    def __init__(self, sinks: Mapping[str, Sink], templates: Iterable[tuple[str, str]]) -> None:
        self.sinks = {path: RouteMatch(sink) for path, sink in sinks.items()}
        self.root = self.sinks.get("/", NO_ROUTE)
        self.first_segments = frozenset(_first_segment(p) for p in self.sinks if p != "/")
        keyed: dict[str, list[tuple[str, str, int, int]]] = {}
        any_head: list[tuple[str, str, int, int]] = []
        for head, tail in templates:
            entry = (head, tail, len(head), len(tail))
            if head.find("/", 1) > 0:
                keyed.setdefault(_first_segment(head), []).append(entry)
            else:  # '/{model_id}...' or '/v1{model_id}': no whole first segment to key on
                any_head.append(entry)
        self.any_head = tuple(any_head)
        self.models = {key: (*entries, *any_head) for key, entries in keyed.items()}

    def find(self, path: str, original: str) -> RouteMatch:
        """The sink and model ``path`` reaches (a model id is cut from ``original``)."""
        cut = path.find("/", 1)
        first = path[:cut] if cut > 0 else path
        found = self._sink(path) if first in self.first_segments else self.root
        for head, tail, start, size in self.models.get(first, self.any_head):
            end = len(path) - size
            if end > start and path.startswith(head) and path.endswith(tail):
                return _new_match(RouteMatch, (found.sink, original[start:end], False))
        return found

    def _sink(self, path: str) -> RouteMatch:
        probe = path
        while probe:
            found = self.sinks.get(probe)
            if found is not None:
                return found
            probe = probe[: probe.rfind("/")]
        return self.root


class RouteTable:
    """The declared routes, precomputed; :meth:`match` judges one request.

    Args:
        sink_routes: path -> sink for routes that feed a sink.
        model_routes: templates holding ``{model_id}`` once, e.g. ``/v1/models/{model_id}/infer``.
        public_paths: paths served without authentication; exact route paths.
        app_root: the root path the application sets for itself (:func:`app_root_path`):
            its route paths are taken under it instead of the server's.

    Raises:
        ValueError: for a route that is not a canonical path, one declared twice (with
            and without a trailing ``/``) with two sinks, or a template without exactly
            one ``{model_id}``.
    """

    def __init__(
        self,
        sink_routes: Mapping[str, Sink],
        model_routes: Iterable[str] = (),
        public_paths: Iterable[str] = (),
        *,
        app_root: str | None = None,
    ) -> None:
        self.app_root = app_root
        sinks: dict[str, Sink] = {}
        for declared, sink in sink_routes.items():
            path = _declared(declared.rstrip("/") or "/", "sink route")
            if sinks.setdefault(path, sink) != sink:
                raise ValueError(f"sink route {path!r} is declared twice, with two sinks")
        templates = [_template(t) for t in model_routes]
        self.public_paths = frozenset(public_paths)
        self._exact = _Lookup(sinks, templates)
        self._folded = _Lookup(
            {_fold(p): s for p, s in sinks.items()}, [(_fold(h), _fold(t)) for h, t in templates]
        )
        self._declared_lower = all(_fold(p) == p for p in sinks) and all(
            _fold(h + t) == h + t for h, t in templates
        )
        self.empty = not sinks and not templates

    def route_path(self, scope: Mapping[str, Any]) -> str:
        """The path the application routes on (:func:`route_path` under ``app_root``)."""
        return route_path(scope, self.app_root)

    def match(self, scope: Mapping[str, Any], path: str) -> RouteMatch:
        """Return the guarded routes ``path`` (the route path of ``scope``) reaches."""
        if self.empty:
            return NO_ROUTE
        found = self._judge(scope, path)
        full = scope.get("path", path)
        if full != path and not found.ambiguous:  # a route may also be written as the full path
            return _merge(found, self._judge(scope, full))
        return found

    def _judge(self, scope: Mapping[str, Any], path: str) -> RouteMatch:
        """The guarded routes one spelling reaches, or AMBIGUOUS if it is not sure."""
        found = self._exact.find(path, path)
        # cheap tests first; only a suspect path is normalized to be sure
        suspect = (
            path[:1] != "/"
            or (path[-1] == "/" and path != "/")
            or "//" in path
            or "/." in path
            or "\\" in path
            or "%" in path
        )
        unsure = suspect and canonical_path(path) != path
        raw = scope.get("raw_path") or b""
        if not unsure and b"%" in raw:
            lowered = raw.lower()
            unsure = any(code in lowered for code in _ENCODED_SEPARATORS)
        if unsure:
            form = canonical_path(path)
            reaches = found is not NO_ROUTE or self._folded.find(_fold(form), form) is not NO_ROUTE
            return AMBIGUOUS if reaches else NO_ROUTE
        case_matters = not self._declared_lower or (not path.islower() and _fold(path) != path)
        if case_matters and self._folded.find(_fold(path), path) != found:
            return AMBIGUOUS
        return found


def _merge(first: RouteMatch, second: RouteMatch) -> RouteMatch:
    if second.ambiguous:
        return AMBIGUOUS
    if second is NO_ROUTE or first == second:
        return first
    if first is NO_ROUTE:
        return second
    same_sink = first.sink is None or second.sink is None or first.sink == second.sink
    same_model = first.model is None or second.model is None or first.model == second.model
    if not (same_sink and same_model):
        return AMBIGUOUS
    sink = first.sink if first.sink is not None else second.sink
    return RouteMatch(sink, first.model if first.model is not None else second.model)


def _declared(path: str, what: str) -> str:
    if not path.startswith("/") or canonical_path(path) != path:
        raise ValueError(
            f"{what} {path!r} must be a canonical path starting with '/' "
            "(no '//', '.', '..', '%' or '\\')"
        )
    return path


def _template(template: str) -> tuple[str, str]:
    if template.count(MODEL_PARAM) != 1 or not template.startswith("/"):
        raise ValueError(f"model route {template!r} must start with / and hold {MODEL_PARAM} once")
    head, tail = template.split(MODEL_PARAM)
    tail = tail.rstrip("/")  # as before: a trailing '/' of a template is ignored
    _declared(head + "x" + tail, "model route")
    return head, tail
