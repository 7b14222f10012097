"""Fuzz baggage parsing: inbound tenant tokens, the strip before the app, outbound tokens.

An input is a request, written as text (as for the credentials harness): a first line
``<peer> <path>`` (peer ``-`` for none), then one header a line, ``name: value``. The
seeds hold genuine ``kairo.tenant`` tokens of the harness key, issued at the harness
clock for the trace of their ``traceparent``. Each request goes to:

- :class:`BaggageResolver` (trusting ``10.0.0.0/8``) with a real :class:`TenantTokenCodec`
  (key ring, 300 s tokens, ``initech`` erased), and :meth:`TenantTokenCodec.open` with every
  token found and every baggage header value whole;
- :func:`inbound_trace_id`, :func:`kairo_tokens`, :func:`strip_kairo_baggage`, judged
  against the W3C ``traceparent`` grammar and OpenTelemetry's own W3C baggage
  propagator (what the app's instrumentation reads);
- the outbound side: :func:`baggage_members` and :class:`TenantBaggagePropagator` with
  the request's baggage as what a client would send on, inside ``acme``'s context.

Invariants:

- nothing escapes the resolver, the header helpers and the propagator; only
  :class:`TokenRejected` (with a documented reason) escapes ``open``;
- **no allow**: a tenant comes out of the resolver or ``open`` only for a token that
  AES-GCM opens under the real key, bound to the trace id of the request's first
  ``traceparent``, unexpired, of an allowed lifetime and not issued before its tenant's
  erasure, sent by a trusted peer as the request's only kairo entry;
- after the strip, no ``baggage`` header holds a kairo entry, by the guard's reading or
  OpenTelemetry's, and every other member and header is kept in order; whatever
  OpenTelemetry reads as a kairo entry, the guard sees too;
- outbound, the ``baggage`` header holds exactly one kairo entry, the fresh token of the
  current tenant for the current trace (none outside a context), within 8,192 bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import ipaddress
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from opentelemetry import trace
from opentelemetry.baggage import get_all
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context

from fuzz.harness import NOW, attempt, key_ring, never_raises, parse_request, require
from kairo_guard.core.context import tenant_context
from kairo_guard.core.exceptions import TokenRejected
from kairo_guard.core.keys import PURPOSE_BAGGAGE, KeyRing
from kairo_guard.ingest.baggage import BaggageResolver
from kairo_guard.ingest.resolvers import RequestInfo
from kairo_guard.otel.baggage import CLOCK_LEEWAY, TenantTokenCodec, baggage_members
from kairo_guard.otel.headers import (
    BAGGAGE_KEY,
    inbound_trace_id,
    kairo_tokens,
    split_baggage,
    strip_kairo_baggage,
)
from kairo_guard.otel.propagator import TenantBaggagePropagator

TARGET = "baggage"
TTL = 300
TRUSTED = ("10.0.0.0/8",)
ERASED = {"initech": NOW - 60}
"""Tenants erased, and when: their tokens issued up to then are refused."""
REASONS = frozenset(
    {
        "malformed",
        "unknown-key",
        "invalid-or-other-trace",
        "expired",
        "bad-lifetime",
        "tenant-erased",
        "guard-error",
    }
)
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
_W3C = W3CBaggagePropagator()
_HEX = re.compile(rb"[0-9a-f]+")


@dataclass(frozen=True)
class _Propagation:
    token_ttl: int = TTL


class _Erasures:
    def __init__(self, ring: KeyRing) -> None:
        self._erased = {ring.pseudonym(t): at for t, at in ERASED.items()}

    def erased_tenants(self) -> Mapping[str, float]:
        return self._erased


@dataclass(frozen=True)
class Authority:
    """What tokens need of a guard (a :class:`TokenAuthority`): the harness's keys,
    lifetime, clock and erasures."""

    keys: KeyRing
    store: _Erasures
    settings: Any

    def clock(self) -> float:
        return float(NOW)


@dataclass(frozen=True)
class World:
    """The real codec, resolver and propagator every request goes to."""

    ring: KeyRing
    codec: TenantTokenCodec
    resolver: BaggageResolver
    propagator: TenantBaggagePropagator
    loop: asyncio.AbstractEventLoop
    audited: list[dict[str, Any]]


@functools.cache
def world() -> World:
    """Build the world once per process."""
    # OpenTelemetry logs every malformed baggage header it reads: fuzzing makes millions
    logging.getLogger("opentelemetry.baggage.propagation").disabled = True
    ring = key_ring()
    erasures = _Erasures(ring)
    codec = TenantTokenCodec(ring, ttl=TTL, clock=lambda: NOW, erased_at=_erased_at)
    audited: list[dict[str, Any]] = []
    resolver = BaggageResolver(codec, TRUSTED, audit=audited.append)
    authority = Authority(ring, erasures, type("Settings", (), {"propagation": _Propagation()})())
    propagator = TenantBaggagePropagator(authority)
    return World(ring, codec, resolver, propagator, asyncio.new_event_loop(), audited)


def _erased_at(tenant: str) -> float | None:
    return ERASED.get(tenant)


def test_one_input(data: bytes) -> None:
    """Check the baggage invariants on one request (see the module docstring)."""
    peer, path, headers = parse_request(data)
    trace_id = check_trace_id(headers)
    check_resolver(peer, path, headers, trace_id)
    check_open(headers, trace_id)
    check_strip(headers)
    check_outbound(headers)
    world().audited.clear()


# -- the specification ------------------------------------------------------------------


def reference_trace_id(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """The trace id of the first ``traceparent`` by the W3C Trace Context grammar."""
    values = [v for n, v in headers if n == b"traceparent"]
    if not values or len(values[0]) > 512:
        return None
    parts = values[0].strip(b" \t").split(b"-", 4)
    if len(parts) < 4:
        return None
    version, trace_id, parent, flags = parts[:4]
    rest = parts[4] if len(parts) == 5 else None
    sizes = ((version, 2), (trace_id, 32), (parent, 16), (flags, 2))
    if not all(len(p) == n and _HEX.fullmatch(p) for p, n in sizes):
        return None
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    if rest is not None and (b"\r" in rest or b"\n" in rest):
        return None
    if not int(trace_id, 16) or not int(parent, 16):
        return None
    return int(trace_id, 16)


def reference_open(ring: KeyRing, token: str, trace_id: int) -> str | None:
    """The tenant a token proves in ``trace_id`` by its specification: AES-GCM under the
    ``baggage`` subkey of the key it names, bound to the trace, then its claims."""
    version, kid, payload = [*token.split(".", 2), "", ""][:3]
    if version != "kgb1" or kid not in ring.keys or not payload or len(token) > 512:
        return None
    if re.fullmatch(r"[A-Za-z0-9_-]+", payload) is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        aad = b"kairo-guard/baggage/v1\x00" + kid.encode() + b"\x00" + trace_id.to_bytes(16, "big")
        plain = AESGCM(ring.subkey(PURPOSE_BAGGAGE, kid)).decrypt(raw[:12], raw[12:], aad)
    except (binascii.Error, ValueError, InvalidTag):
        return None
    claims = orjson.loads(plain)  # made by the real key: the codec's own JSON
    tenant, issued, expires = claims["t"], claims["iat"], claims["exp"]
    erased = ERASED.get(tenant)
    if not expires > NOW or issued > NOW + CLOCK_LEEWAY or expires - issued > TTL:
        return None
    return None if erased is not None and issued <= erased else tenant


def _trusted(peer: str | None) -> bool:
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n) for n in TRUSTED)


def _otel_keys(value: bytes) -> dict[str, object]:
    """What OpenTelemetry's W3C propagator reads from one ``baggage`` header value."""
    context = _W3C.extract({"baggage": value.decode("latin-1")}, context=Context())
    return dict(get_all(context))


# -- the checks -------------------------------------------------------------------------


def check_trace_id(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The trace id is the first ``traceparent``'s, by the W3C grammar."""
    found = never_raises(lambda: inbound_trace_id(headers), "inbound_trace_id")
    want = reference_trace_id(headers)
    require(found == want, f"trace id {found!r}, the W3C grammar reads {want!r}")
    return found


def check_resolver(
    peer: str | None, path: str, headers: list[tuple[bytes, bytes]], trace_id: int | None
) -> None:
    """The resolver names a tenant only for a genuine token of the request's trace."""
    w = world()
    info = RequestInfo(peer, path, headers)
    found = never_raises(lambda: w.loop.run_until_complete(w.resolver.resolve(info)), "resolve")
    tokens = never_raises(lambda: kairo_tokens(headers), "kairo_tokens")
    if found is None:
        return
    require(_trusted(peer), f"a token from untrusted peer {peer!r} accepted")
    require(len(tokens) == 1, f"accepted with {len(tokens)} kairo entries")
    proved = None if trace_id is None else reference_open(w.ring, tokens[0], trace_id)
    require(found == proved, f"resolved {found!r}, the token proves {proved!r}")


def check_open(headers: list[tuple[bytes, bytes]], trace_id: int | None) -> None:
    """``open`` names a tenant only for a genuine token of that trace."""
    w = world()
    candidates = list(kairo_tokens(headers))
    candidates += [v.decode("latin-1") for n, v in headers if n == b"baggage"]
    for token in candidates[:6]:
        for bound in {trace_id or TRACE_ID, TRACE_ID}:
            found = attempt(functools.partial(w.codec.open, token, bound), (TokenRejected,), "open")
            if isinstance(found, TokenRejected):
                require(found.reason in REASONS, f"undocumented reason {found.reason!r}")
                continue
            proved = reference_open(w.ring, token, bound)
            require(found == proved, f"open gave {found!r} for {token!r:.80}: proves {proved!r}")


def check_strip(headers: list[tuple[bytes, bytes]]) -> None:
    """No kairo entry survives the strip, by anyone's reading; the rest is kept."""
    for name, value in headers:
        if name == b"baggage" and BAGGAGE_KEY in _otel_keys(value):
            found = [k for k, _ in split_baggage(value.decode("latin-1"))]
            require(
                BAGGAGE_KEY in found,
                f"OpenTelemetry reads a kairo entry the guard misses: {value!r:.120}",
            )
    scope: dict[str, Any] = {"type": "http", "headers": list(headers)}
    never_raises(lambda: strip_kairo_baggage(scope), "strip_kairo_baggage")
    kept = scope["headers"]
    want = []
    for name, value in headers:
        if name != b"baggage":
            want.append((name, value))
            continue
        members = [m for k, m in split_baggage(value.decode("latin-1")) if k != BAGGAGE_KEY]
        if members:
            want.append((name, ",".join(members).encode("latin-1")))
    require(list(kept) == want, "the strip changed more than the kairo entries")
    for name, value in kept:
        if name == b"baggage":
            require(not kairo_tokens([(name, value)]), "a kairo entry survived the strip")
            require(BAGGAGE_KEY not in _otel_keys(value), "OpenTelemetry still reads a token")


def check_outbound(headers: list[tuple[bytes, bytes]]) -> None:
    """What goes out holds one kairo entry: the current tenant's fresh token."""
    w = world()
    existing = ",".join(v.decode("latin-1") for n, v in headers if n == b"baggage")
    token = w.codec.issue("acme", TRACE_ID)
    for fresh in (None, token):
        members = never_raises(functools.partial(baggage_members, existing, fresh), "members")
        header = ",".join(members)
        sent = kairo_tokens([(b"baggage", header.encode("latin-1"))])
        require(sent == ([] if fresh is None else [fresh]), f"outbound kairo entries {sent!r:.120}")
        if fresh is not None:
            require(len(header.encode()) <= 8192, f"outbound baggage of {len(header.encode())} B")
    carrier: dict[str, Any] = {n.decode("latin-1"): v.decode("latin-1") for n, v in headers[:8]}
    span = trace.NonRecordingSpan(trace.SpanContext(TRACE_ID, SPAN_ID, is_remote=False))
    context = trace.set_span_in_context(span, Context())
    with tenant_context("acme"):
        never_raises(lambda: w.propagator.inject(carrier, context), "TenantBaggagePropagator")
    names = [k for k in carrier if k.lower() == "baggage"]
    require(names == ["baggage"], f"outbound baggage under {names!r}")
    sent = kairo_tokens([(b"baggage", carrier["baggage"].encode("latin-1"))])
    require(
        len(sent) == 1 and reference_open(w.ring, sent[0], TRACE_ID) == "acme",
        "the propagator did not send exactly acme's fresh token",
    )


def _traceparent(trace_id: int, version: str = "00") -> bytes:
    return f"{version}-{trace_id:032x}-{SPAN_ID:016x}-01".encode()


def seed_inputs() -> dict[str, bytes]:
    """Named seeds: genuine tokens (trusted and untrusted peers, other traces, a rotated
    key, an erased tenant, expired ones), encoded keys, duplicates and properties."""
    other_trace = TRACE_ID + 1

    def token(tenant: str, *, at: int = NOW, kid: str = "k1", trace_id: int = TRACE_ID) -> bytes:
        codec = TenantTokenCodec(key_ring(kid), ttl=TTL, clock=lambda: at)
        return codec.issue(tenant, trace_id).encode()

    acme = token("acme")
    tp = b"traceparent: " + _traceparent(TRACE_ID)

    def request(peer: bytes, *lines: bytes) -> bytes:
        return b"\n".join([peer + b" /documents", *lines])

    return {
        "genuine-trusted": request(b"10.0.0.7", tp, b"baggage: kairo.tenant=" + acme + b",x=1"),
        "genuine-untrusted": request(b"192.0.2.1", tp, b"baggage: kairo.tenant=" + acme),
        "genuine-no-peer": request(b"-", tp, b"baggage: kairo.tenant=" + acme),
        "other-trace": request(
            b"10.0.0.7",
            b"traceparent: " + _traceparent(other_trace),
            b"baggage: kairo.tenant=" + acme,
        ),
        "future-version": request(
            b"10.1.1.1",
            b"traceparent: " + _traceparent(TRACE_ID, "01") + b"-extra \t",
            b"baggage: kairo.tenant=" + acme,
        ),
        "rotated-key": request(
            b"10.0.0.7", tp, b"baggage: kairo.tenant=" + token("globex", kid="k0")
        ),
        "erased-before": request(
            b"10.0.0.7", tp, b"baggage: kairo.tenant=" + token("initech", at=NOW - 120)
        ),
        "issued-after-erasure": request(
            b"10.0.0.7", tp, b"baggage: kairo.tenant=" + token("initech")
        ),
        "expired": request(
            b"10.0.0.7", tp, b"baggage: kairo.tenant=" + token("acme", at=NOW - 400)
        ),
        "encoded-key": request(b"10.0.0.7", tp, b"baggage: a=b, kairo%2Etenant=" + acme + b";p=1"),
        "duplicate": request(
            b"10.0.0.7", tp, b"baggage: kairo.tenant=" + acme, b"baggage: kairo.tenant=" + acme
        ),
        "two-traceparents": request(
            b"10.0.0.7",
            b"traceparent: " + _traceparent(other_trace),
            tp,
            b"baggage: kairo.tenant=" + acme,
        ),
        "empty-entry": request(b"10.0.0.7", tp, b"baggage: kairo.tenant=,k=v;q"),
        "plus-key": request(b"10.0.0.7", tp, b"baggage: +kairo.tenant+ = " + acme),
        "long-baggage": request(
            b"10.0.0.7",
            tp,
            b"baggage: "
            + b",".join(b"member%d=%s" % (i, b"v" * 90) for i in range(90))
            + b",kairo.tenant="
            + acme,
        ),
        "case-and-carrier": request(
            b"10.0.0.7", tp, b"Baggage: kairo.tenant=x", b"baggage: " + b"kairo.tenant=" + acme
        ),
        "ipv6": request(b"::ffff:10.0.0.7", tp, b"baggage: kairo.tenant=" + acme),
        "raw-token": request(b"10.0.0.7", tp, b"baggage: " + acme),
    }
