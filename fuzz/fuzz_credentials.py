"""Fuzz credential parsing: API keys in headers, the key cache, the native admission gate.

An input is a request, written as text: a first line ``<peer> <path>`` (peer ``-`` for
none), then one header a line, ``name: value`` (bytes as they come). Each request goes
to:

- the middleware's default API key and proxy resolvers (:class:`ApiKeyResolver`,
  :class:`TrustedProxyResolver` trusting ``10.0.0.0/8``, under a
  :class:`CompositeResolver`), over a real SQLite store holding real keys of ``acme``
  and ``globex`` and a revoked one of ``initech``;
- :meth:`ApiKeyVerifier.verify` and :meth:`~ApiKeyVerifier.cached` with every header
  value, and the native key cache (``_gate.Keys``) with its bytes;
- the native gate (``_gate.Gate.admit``, the middleware's fast path in C) and
  :meth:`FastPath.admit_python`, with the request as an ASGI scope;
- ``_gate.Keys.fingerprint`` under a fuzzed pepper (the first header's value).

The stored keys use scrypt with tiny parameters (``scrypt$2$1$1``, read from each key's
record as the verifier always does) so that a fuzzed key with a real key id costs
microseconds, not the production 50 ms; the code path is the same. The verifier's clock
is frozen, so the keys verified at start stay in its cache for the whole run.

Invariants:

- only :class:`AuthenticationError` escapes a resolver; nothing escapes the verifier,
  the key cache or the gate;
- **no allow**: a resolver names a tenant only for a request holding exactly one
  credential header whose token (``Bearer`` scheme, any case, for ``authorization``;
  white space around it) is that tenant's real, unrevoked key, or, from a trusted peer,
  exactly one tenant header; ``verify`` and ``cached`` answer only the exact real key;
  the gate admits only a request with exactly one ``authorization: Bearer <real key>``,
  one ``content-length`` of 1 to the cap, no other credential or tracing header and a
  plain route, and says what ``admit_python`` says (they are documented to decide alike);
- a real key in a lone, well-formed credential header authenticates (no false refusal);
- the native fingerprint is HMAC-SHA256 under the pepper, whatever its length.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fuzz.harness import (
    NOW,
    Finding,
    attempt,
    key_ring,
    never_raises,
    parse_request,
    require,
    scratch_dir,
)
from kairo_guard.core.exceptions import AuthenticationError
from kairo_guard.core.types import TENANT_PATTERN
from kairo_guard.guard import Guard
from kairo_guard.ingest.apikeys import ApiKeyVerifier
from kairo_guard.ingest.fast_path import FastPath
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.ingest.resolvers import (
    ApiKeyResolver,
    CompositeResolver,
    RequestInfo,
    TrustedProxyResolver,
)
from kairo_guard.store.base import ApiKeyRecord

try:  # built at install time (hatch_build.py); without it there is no gate to fuzz
    from kairo_guard.ingest import _gate as native_gate
except ImportError:  # pragma: no cover
    native_gate = None  # type: ignore[assignment]

TARGET = "credentials"
FAST_KDF = "scrypt$2$1$1"
KEYS = {
    "acme": "kgk.00000000000000a1." + "A" * 21 + "_-" + "z" * 20,
    "globex": "kgk.00000000000000b2.0123456789abcdefghijklmnopqrstuvwxyzABCDEFG",
}
REVOKED = ("initech", "kgk.00000000000000c3.revokedrevokedrevokedrevokedrevokedrevoked")
TRUSTED = ("10.0.0.0/8",)
TENANT_HEADER = b"x-kairo-tenant"
REFUSED = (b"authorization", b"x-api-key", b"baggage", b"traceparent", TENANT_HEADER)
MAX_SIZE = 65_536
FROZEN = 1_000.0
"""The verifier's monotonic clock: the keys verified at start stay fresh."""
_WS = "[ \t\n\r\x0b\x0c]*"  # bytes.strip() and the gate's white space


@dataclass(frozen=True)
class World:
    """The real store, verifier, resolvers and gate every request goes to."""

    verifier: ApiKeyVerifier
    keys: Any
    """The verifier's cache as the native gate reads it (``_gate.Keys``)."""
    resolver: CompositeResolver
    fast: FastPath
    loop: asyncio.AbstractEventLoop


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called
    return None


def _add_key(guard: Guard, tenant: str, key: str) -> None:
    _, key_id, secret = key.split(".")
    salt = hashlib.sha256(key_id.encode()).digest()[:16]
    derived = hashlib.scrypt(secret.encode(), salt=salt, n=2, r=1, p=1, dklen=32)
    guard.store.add_api_key(ApiKeyRecord(key_id, tenant, FAST_KDF, salt, derived, NOW, None))


@functools.cache
def world() -> World:
    """Build the world once per process."""
    guard = Guard(home=scratch_dir(TARGET), key=key_ring(), env={}, pii_gate=False)
    for tenant, key in (*KEYS.items(), REVOKED):
        _add_key(guard, tenant, key)
    guard.store.revoke_api_keys(REVOKED[0], now=NOW, key_id=None)
    sink = guard.resolve_sink("fuzz-train", kind="shared-training")
    app = GuardMiddleware(
        _app,
        guard=guard,
        indexer="none",
        sink_routes={"/train": sink},
        public_paths=["/healthz"],
        model_routes=["/v1/models/{model_id}/infer"],
    )
    if native_gate is None:
        raise Finding("the native gate (kairo_guard/ingest/_gate.c) was not built")
    verifier = ApiKeyVerifier(guard.store, clock=lambda: FROZEN)
    for tenant, key in KEYS.items():
        require(verifier.verify(key) == tenant, f"the real key of {tenant} does not verify")
    require(verifier.verify(REVOKED[1]) is None, "the revoked key verifies")
    others = (b"x-api-key", b"baggage", TENANT_HEADER)
    fast = FastPath(verifier, app.routes, app.spool, guard.telemetry, others, MAX_SIZE)
    resolver = CompositeResolver(
        [ApiKeyResolver(verifier), TrustedProxyResolver(TRUSTED, header=TENANT_HEADER.decode())]
    )
    return World(verifier, verifier.native_keys, resolver, fast, asyncio.new_event_loop())


def test_one_input(data: bytes) -> None:
    """Check the credential invariants on one request (see the module docstring)."""
    peer, path, headers = parse_request(data)
    check_resolvers(peer, path, headers)
    check_key_cache(headers)
    check_gate(path, headers)
    check_fingerprint(headers)


def _real_tenant(token: str) -> str | None:
    return next((t for t, k in KEYS.items() if k == token), None)


def _key_in(value: bytes, pattern: str) -> str | None:
    """The tenant whose real key is the token of ``value`` read with ``pattern``."""
    text = value.decode("latin-1")
    for tenant, key in KEYS.items():
        if re.fullmatch(pattern.format(key=re.escape(key)), text, re.IGNORECASE):
            return tenant
    return None


def _api_key_proof(headers: Sequence[tuple[bytes, bytes]]) -> tuple[int, str | None]:
    """How many credential headers there are, and the tenant a lone one proves."""
    creds = [(n, v) for n, v in headers if n in (b"authorization", b"x-api-key")]
    if len(creds) != 1:
        return len(creds), None
    name, value = creds[0]
    # any white space str.strip() removes (latin-1 has some past ASCII) around the token
    pattern = r"\s*bearer \s*{key}\s*" if name == b"authorization" else r"\s*{key}\s*"
    tenant = _key_in(value, pattern)
    # the scheme is compared case-insensitively, the key exactly
    return 1, tenant if tenant and KEYS[tenant] in value.decode("latin-1") else None


def _proxy_proof(peer: str | None, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    values = [v for n, v in headers if n == TENANT_HEADER]
    try:
        trusted = peer is not None and any(
            ipaddress.ip_address(peer) in ipaddress.ip_network(n) for n in TRUSTED
        )
    except ValueError:
        trusted = False
    if not trusted or len(values) != 1:
        return None
    tenant = values[0].decode("latin-1").strip()
    return tenant if TENANT_PATTERN.fullmatch(tenant) else None


def check_resolvers(peer: str | None, path: str, headers: list[tuple[bytes, bytes]]) -> None:
    """A resolver names only a tenant the request proves, and a lone real key works."""
    w = world()
    info = RequestInfo(peer, path, headers)
    found = attempt(
        lambda: w.loop.run_until_complete(w.resolver.resolve(info)),
        (AuthenticationError,),
        "resolve",
    )
    count, by_key = _api_key_proof(headers)
    by_proxy = _proxy_proof(peer, headers)
    if isinstance(found, str):
        require(found in (by_key, by_proxy), f"resolved {found!r}, proved {by_key!r}/{by_proxy!r}")
    elif found is None:
        require(count == 0, "credential headers ignored")
    if by_key is not None and not any(n == TENANT_HEADER for n, _ in headers):
        require(found == by_key, f"the real key of {by_key} refused: {found!r}")


def check_key_cache(headers: list[tuple[bytes, bytes]]) -> None:
    """``verify`` and the caches answer only the exact real key."""
    w = world()
    keys = w.keys
    for _, value in headers[:4]:
        for token in {value.decode("latin-1"), value.decode("latin-1").strip()}:
            real = _real_tenant(token)
            verified = never_raises(functools.partial(w.verifier.verify, token), "verify")
            require(verified == real, f"verify({token!r:.80}) gave {verified!r}")
            cached = never_raises(functools.partial(w.verifier.cached, token), "cached")
            require(cached == real, f"cached({token!r:.80}) gave {cached!r}")
        native = never_raises(functools.partial(keys.cached, value), "Keys.cached")
        require(native == _real_tenant(value.decode("latin-1")), f"Keys.cached({value!r:.80})")


def check_gate(path: str, headers: list[tuple[bytes, bytes]]) -> None:
    """The gate admits only a lone real Bearer key with a size, as Python does."""
    w = world()
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "headers": headers,
    }
    native = never_raises(lambda: w.fast.admit(scope), "Gate.admit")
    python = never_raises(lambda: w.fast.admit_python(scope), "FastPath.admit_python")
    auth = [v for n, v in headers if n == b"authorization"]
    length = [v for n, v in headers if n == b"content-length"]
    require(native == python, f"gate {native!r} != python {python!r}")
    if native is None:
        return
    tenant, size = native
    require(len(auth) == 1 and len(length) == 1, "admitted without exactly one of each")
    require(_key_in(auth[0], "Bearer " + _WS + "{key}" + _WS) == tenant, "admitted another key")
    require(KEYS[tenant] in auth[0].decode("latin-1"), "admitted a key in another case")
    require(length[0].isdigit() and int(length[0]) == size and 0 < size <= MAX_SIZE, "size")
    require(not any(n in REFUSED[1:] for n, _ in headers), "admitted with another credential")
    guarded = path in ("/train", "/healthz") or path.startswith(("/train/", "/v1/models/"))
    require(not guarded, f"admitted on a guarded or public route {path!r}")


def check_fingerprint(headers: list[tuple[bytes, bytes]]) -> None:
    """The native HMAC is HMAC-SHA256, for peppers of every length."""
    pepper = headers[0][1] if headers else b""
    data = headers[1][1] if len(headers) > 1 else b""
    if native_gate is None:  # (world() refused to run without it)
        raise Finding("the native gate was not built")
    keys = native_gate.Keys(
        pepper=pepper,
        cache={},
        store=None,
        clock=lambda: FROZEN,
        ahead=0.3,
        refreshing=set(),
        refresh=lambda fingerprint, presented: None,
    )
    want = hmac.digest(pepper, data, hashlib.sha256)
    require(keys.fingerprint(data) == want, f"native HMAC differs (pepper of {len(pepper)} bytes)")


def seed_inputs() -> dict[str, bytes]:
    """Named seeds: real keys in each header and shape the parsers take, the revoked key,
    other credentials beside them, odd sizes and routes."""
    acme, globex = (KEYS[t].encode() for t in ("acme", "globex"))
    size = b"content-length: 120"

    def request(first: bytes, *lines: bytes) -> bytes:
        return b"\n".join([first, *lines])

    return {
        "bearer": request(b"- /documents", b"authorization: Bearer " + acme, size),
        "bearer-padded": request(
            b"- /documents", b"authorization: Bearer  \t" + acme + b" \x0b", size
        ),
        "bearer-lower": request(b"- /v1/chat", b"authorization: bearer " + globex, size),
        "bearer-latin1-space": request(
            b"- /documents", b"authorization: Bearer " + acme + b"\xa0", size
        ),
        "api-key-header": request(b"- /documents", b"x-api-key: " + globex, size),
        "both-headers": request(
            b"- /documents", b"authorization: Bearer " + acme, b"x-api-key: " + acme, size
        ),
        "revoked": request(b"- /documents", b"authorization: Bearer " + REVOKED[1].encode(), size),
        "wrong-secret": request(
            b"- /documents", b"authorization: Bearer " + acme[:-1] + b"y", size
        ),
        "basic-scheme": request(b"- /documents", b"authorization: Basic " + acme, size),
        "proxy-trusted": request(b"10.2.3.4 /documents", b"x-kairo-tenant: acme", size),
        "proxy-conflict": request(
            b"10.2.3.4 /documents",
            b"x-kairo-tenant: globex",
            b"authorization: Bearer " + acme,
            size,
        ),
        "proxy-untrusted": request(b"192.0.2.9 /documents", b"x-kairo-tenant: acme"),
        "sizes": request(
            b"- /documents", b"authorization: Bearer " + acme, b"content-length: 000000000000065536"
        ),
        "size-too-big": request(
            b"- /documents", b"authorization: Bearer " + acme, b"content-length: 65537"
        ),
        "guarded-route": request(b"- /train/x", b"authorization: Bearer " + acme, size),
        "public-route": request(b"- /healthz", b"authorization: Bearer " + acme, size),
        "with-baggage": request(
            b"- /documents", b"authorization: Bearer " + acme, size, b"baggage: a=b"
        ),
        "long-pepper": request(b"- /", b"x: " + b"p" * 100, b"y: data"),
    }
