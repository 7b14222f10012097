"""Tenant API keys: ``kgk.<key id>.<secret>``, stored only as a slow bcrypt hash.

The key id is public and finds the record; the secret is checked with bcrypt (work
factor :data:`BCRYPT_ROUNDS`), as the privacy policy promises for API keys. Keys made
before bcrypt (records whose ``kdf`` is ``scrypt$N$r$p``) still verify. The result of
the slow hash is remembered in process for :data:`CACHE_SECONDS` under a keyed hash of
the presented key, so a busy service pays bcrypt about once per key and worker every
quarter of an hour, not per request (hashing the same secret again against an unchanged
record proves nothing new; a changed record voids the entry at once). The key's record
is read again at most every :data:`REVALIDATE_SECONDS`
(:meth:`ApiKeyVerifier.cached`, the request path's check, reads nothing), so a revoked
key, or an erased tenant's, stops working in every process within that second. A key in
use is read again ahead of time, in a background thread, during the last
:data:`REFRESH_AHEAD_SECONDS` of its second (and hashed again there when its bcrypt
result is due): requests with a busy key never find it expired, so they never wait for
the store or bcrypt. Verifications of one presented key run one at a time: requests that
arrive together with a key not yet verified (a cold start, a worker's first second) wait
for the first one's bcrypt and find its result cached, instead of each hashing it again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import bcrypt

from kairo_guard.core.types import TenantId, validate_tenant
from kairo_guard.store.base import ApiKeyRecord, Store

try:  # compiled at install time (hatch_build.py), beside the spool writer
    import kairo_guard.ingest._gate as native_gate
except ImportError:  # not built: the cache is read in Python
    native_gate = None  # type: ignore[assignment]

KEY_PREFIX = "kgk"
CACHE_SECONDS = 900.0
"""How long a bcrypt verification stands for the same presented key and an unchanged
record. At 30 s, twenty busy tenants' keys kept bcrypt busy on two thirds of a core of
a 4-worker service (``benchmarks/load_pg.py``: 2,982 requests/s, against 3,314 with
this)."""
REVALIDATE_SECONDS = 1.0
"""How long a verified key is trusted without reading its record again."""
REFRESH_AHEAD_SECONDS = 0.3
"""A key used this close to the end of its trusted second is read again in the background."""
logger = logging.getLogger("kairo_guard.ingest.apikeys")
BCRYPT_ROUNDS = 12
"""bcrypt's work factor for new keys (2^12 rounds, about 0.2 s a hash on one core; a
record keeps its own, so raising it leaves older keys valid)."""
_KEY = re.compile(r"kgk\.([0-9a-f]{16})\.([A-Za-z0-9_-]{43})")


def _matches(secret: str, record: ApiKeyRecord) -> bool:
    """True if ``secret`` is the one ``record`` was made from (bcrypt; scrypt for keys
    made before bcrypt); False for a record of an unknown or malformed derivation."""
    name, _, params = record.kdf.partition("$")
    try:
        if name == "bcrypt":
            return bcrypt.checkpw(secret.encode("ascii"), record.hash)
        if name == "scrypt":
            n, r, p = (int(v) for v in params.split("$"))
            derived = hashlib.scrypt(secret.encode("ascii"), salt=record.salt, n=n, r=r, p=p,
                                     maxmem=64 << 20, dklen=32)  # fmt: skip
            return hmac.compare_digest(derived, record.hash)
    except ValueError:  # a damaged record: no key matches it
        return False
    return False


def new_api_key(store: Store, tenant: TenantId, *, now: float | None = None) -> str:
    """Create, store (hashed) and return a new API key for ``tenant``; shown only once."""
    validate_tenant(tenant)
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)  # 43 characters: under bcrypt's 72-byte input
    rounds = BCRYPT_ROUNDS
    store.add_api_key(
        ApiKeyRecord(
            key_id=key_id,
            tenant=tenant,
            kdf=f"bcrypt${rounds}",
            salt=b"",  # bcrypt keeps its salt in the hash
            hash=bcrypt.hashpw(secret.encode("ascii"), bcrypt.gensalt(rounds)),
            created_at=time.time() if now is None else now,
            revoked_at=None,
        )
    )
    return f"{KEY_PREFIX}.{key_id}.{secret}"


@dataclass(frozen=True, slots=True)
class _Cached:
    record: ApiKeyRecord
    """The record the secret was checked against: a changed record voids the entry."""
    until: float
    """Until when the bcrypt result stands (then the secret is hashed again)."""
    fresh: float
    """Until when the record is trusted without reading it again."""
    generation: int
    """The store's key generation when the record was read."""


class ApiKeyVerifier:
    """Checks presented API keys against the store, with a short in-process cache."""

    def __init__(
        self,
        store: Store,
        *,
        cache_seconds: float = CACHE_SECONDS,
        revalidate_seconds: float = REVALIDATE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = cache_seconds
        self._fresh = min(revalidate_seconds, cache_seconds)
        self._clock = clock
        self._pepper = secrets.token_bytes(32)  # cache keys are useless outside this process
        self._cache: dict[bytes, _Cached] = {}
        self._lock = threading.Lock()
        self._ahead = min(REFRESH_AHEAD_SECONDS, self._fresh / 2)
        self._refreshing: set[bytes] = set()
        self._verifying: dict[bytes, tuple[threading.Lock, list[int]]] = {}
        """Per presented key being verified: its lock and how many threads hold or wait."""
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0
        self.native_keys = (
            None
            if native_gate is None
            else native_gate.Keys(
                pepper=self._pepper,
                cache=self._cache,
                store=store,
                clock=clock,
                ahead=self._ahead,
                refreshing=self._refreshing,
                refresh=self._refresh_soon,
            )
        )
        """This cache as the native fast path reads it (None when it was not built): the
        same dict, fingerprints and rules as :meth:`cached`."""

    @staticmethod
    def well_formed(presented: str) -> bool:
        """True if ``presented`` has the shape of a kairo-guard API key."""
        return _KEY.fullmatch(presented) is not None

    def _cache_key(self, presented: str) -> bytes:
        # any string: a header's bytes come as latin-1 text, and never raise here
        data = presented.encode("utf-8", "surrogatepass")
        if self.native_keys is not None:  # HMAC-SHA256 in C, as the fast path computes it
            return self.native_keys.fingerprint(data)
        # keyed BLAKE2b: a MAC without OpenSSL's per-call setup (hmac.digest ~1.5 us)
        return hashlib.blake2b(data, key=self._pepper, digest_size=32).digest()

    def cached(self, presented: str) -> TenantId | None:
        """The tenant of a key verified and read within :data:`REVALIDATE_SECONDS`, else
        None (then :meth:`verify` decides). Reads nothing: safe on the event loop."""
        fingerprint = self._cache_key(presented)
        entry = self._cache.get(fingerprint)
        if entry is None or entry.generation != self._store.key_generation:
            return None
        left = entry.fresh - self._clock()
        if left <= 0:
            return None
        if left < self._ahead and fingerprint not in self._refreshing:
            self._refresh_soon(fingerprint, presented)
        return entry.record.tenant

    def _refresh_soon(self, fingerprint: bytes, presented: str) -> None:
        with self._lock:
            if fingerprint in self._refreshing:
                return
            self._refreshing.add(fingerprint)
        try:
            if self._executor is None or self._executor_pid != os.getpid():  # (a fork)
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="kairo-guard-keys")
                self._executor_pid = os.getpid()
            self._executor.submit(self._refresh, fingerprint, presented)
        except RuntimeError:  # shutting down: the key expires and is verified as usual
            with self._lock:
                self._refreshing.discard(fingerprint)

    def _refresh(self, fingerprint: bytes, presented: str) -> None:
        try:
            if self.verify(presented) is None:  # revoked or erased meanwhile: gone now
                with self._lock:
                    self._cache.pop(fingerprint, None)
        except Exception:  # the store is unreadable: the entry expires, requests decide
            logger.warning("cannot read an API key's record again", exc_info=True)
        finally:
            with self._lock:
                self._refreshing.discard(fingerprint)

    def verify(self, presented: str) -> TenantId | None:
        """Return the tenant of a valid, unrevoked key, else None (slow: run off-loop).

        Raises:
            StoreError: if the store cannot be read (callers fail closed).
        """
        match = _KEY.fullmatch(presented)
        if match is None:
            return None
        fingerprint = self._cache_key(presented)
        with self._lock:
            if fingerprint not in self._verifying:
                self._verifying[fingerprint] = (threading.Lock(), [0])
            lock, users = self._verifying[fingerprint]
            users[0] += 1
        try:
            with lock:  # one verification of this key at a time: the next finds its result
                return self._verify(match, fingerprint)
        finally:
            with self._lock:
                users[0] -= 1
                if not users[0]:
                    del self._verifying[fingerprint]

    def _verify(self, match: re.Match[str], fingerprint: bytes) -> TenantId | None:
        now = self._clock()
        generation = self._store.key_generation  # before the read: a later change voids
        with self._lock:
            cached = self._cache.get(fingerprint)
        record = self._store.get_api_key(match.group(1))
        if record is None or record.revoked_at is not None:
            return None
        if cached is not None and cached.until > now and cached.record == record:
            with self._lock:
                self._cache[fingerprint] = _Cached(
                    record, cached.until, now + self._fresh, generation
                )
            return record.tenant
        if not _matches(match.group(2), record):
            return None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[fingerprint] = _Cached(
                record, now + self._ttl, now + self._fresh, generation
            )
        return record.tenant

    def forget(self) -> None:
        """Drop the cache (after revocations in this process)."""
        with self._lock:
            self._cache.clear()
