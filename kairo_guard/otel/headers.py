"""Inbound W3C headers: the trace context a request names, and kairo baggage.

The ``traceparent`` is parsed strictly (W3C Trace Context level 1); the signed tenant
token travels as the :data:`BAGGAGE_KEY` member of ``baggage``, and these helpers find
it, or strip it from the request (headers and OpenTelemetry context alike) so that the
app and its own outbound calls never see or forward one.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from typing import Any
from urllib.parse import unquote_plus

from opentelemetry import baggage, context, trace

BAGGAGE_KEY = "kairo.tenant"
"""The W3C baggage entry that carries the signed tenant token."""
BAGGAGE_HEADER = b"baggage"

# W3C Trace Context, level 1: version-traceid-parentid-flags, lowercase hex; a version
# after 00 may append fields, version ff is invalid; optional spaces or tabs around.
_TRACEPARENT = re.compile(
    rb"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\r\n]*)?[ \t]*"
)
_MAX_TRACEPARENT = 512
_MAX_TRACESTATE = 512
_ZERO_TRACE_ID, _ZERO_SPAN_ID = b"0" * 32, b"0" * 16
_FLAGS = {b"00": trace.TraceFlags(0), b"01": trace.TraceFlags(1)}


def inbound_span_context(headers: Iterable[tuple[bytes, bytes]]) -> trace.SpanContext | None:
    """The remote span context the request's ``traceparent`` names, or None when it
    has none or an invalid one (the first ``traceparent`` counts; ``tracestate``
    headers are joined, and ignored when too long or malformed)."""
    traceparent = None
    tracestate: list[bytes] = []
    for name, value in headers:
        if name == b"traceparent":
            if traceparent is None:
                traceparent = value
        elif name == b"tracestate":
            tracestate.append(value)
    if traceparent is None or len(traceparent) > _MAX_TRACEPARENT:
        return None
    match = _TRACEPARENT.fullmatch(traceparent)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest):
        return None
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    state = None
    if tracestate:
        joined = b",".join(tracestate)
        if len(joined) <= _MAX_TRACESTATE:
            state = trace.TraceState.from_header([joined.decode("latin-1")])
    trace_flags = _FLAGS.get(flags)
    if trace_flags is None:
        trace_flags = trace.TraceFlags(int(flags, 16))
    return trace.SpanContext(int(trace_id, 16), int(span_id, 16), True, trace_flags, state)


def inbound_trace_id(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """The W3C trace id the request's ``traceparent`` names, or None."""
    span_context = inbound_span_context(headers)
    return None if span_context is None else span_context.trace_id


def split_baggage(value: str) -> list[tuple[str, str]]:
    """The ``(key, member)`` pairs of one ``baggage`` header value (members kept whole).

    Keys are percent-decoded as the W3C propagator decodes them, so that
    ``kairo%2Etenant`` is recognised (and stripped) as the kairo key it becomes in
    every OpenTelemetry context downstream.
    """
    members = []
    for member in value.split(","):
        text = member.strip()
        if text:
            key = text.split("=", 1)[0].split(";", 1)[0]
            members.append((unquote_plus(key).strip(), text))
    return members


def kairo_tokens(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every kairo baggage value in the request's ``baggage`` headers, in order (an
    entry without a value counts, as the empty string: it is malformed, not absent)."""
    found = []
    for name, raw in headers:
        if name == BAGGAGE_HEADER:
            for key, member in split_baggage(raw.decode("latin-1")):
                if key == BAGGAGE_KEY:
                    value = member.partition("=")[2].split(";", 1)[0]
                    found.append(unquote_plus(value).strip())
    return found


@contextlib.contextmanager
def without_kairo_baggage(scope: MutableMapping[str, Any]) -> Iterator[None]:
    """Run the block with kairo baggage gone from the scope's headers and from the
    OpenTelemetry context (for requests the middleware passes through unauthenticated:
    they must not relay a token downstream either)."""
    strip_kairo_baggage(scope)
    ctx = context.get_current()
    if baggage.get_baggage(BAGGAGE_KEY, ctx) is None:
        yield
        return
    token = context.attach(baggage.remove_baggage(BAGGAGE_KEY, ctx))
    try:
        yield
    finally:
        context.detach(token)


def strip_kairo_baggage(scope: MutableMapping[str, Any]) -> None:
    """Remove kairo baggage from the scope's ``baggage`` headers (others are kept)."""
    headers = scope.get("headers") or ()
    for name, _ in headers:
        if name == BAGGAGE_HEADER:
            break
    else:
        return
    kept = []
    for name, raw in headers:
        if name == BAGGAGE_HEADER:
            members = split_baggage(raw.decode("latin-1"))
            rest = ",".join(member for key, member in members if key != BAGGAGE_KEY)
            if not rest:
                continue
            raw = rest.encode("latin-1")
        kept.append((name, raw))
    scope["headers"] = kept
