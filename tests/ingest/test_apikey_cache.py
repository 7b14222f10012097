"""The API key cache: a verified key is trusted for REVALIDATE_SECONDS without a store
read; a revocation through the same store object applies at once, through another one
(another process, the CLI) once that second is over.

The store is the real SQLite store, wrapped only to count its reads of key records.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kairo_guard.core.types import TenantId
from kairo_guard.ingest import apikeys
from kairo_guard.ingest.apikeys import (
    REFRESH_AHEAD_SECONDS,
    REVALIDATE_SECONDS,
    ApiKeyVerifier,
    new_api_key,
)
from kairo_guard.store.base import ApiKeyRecord
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore


class CountingStore(SQLiteStore):
    """The SQLite store, counting how often a key's record is read."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        self.reads += 1
        return super().get_api_key(key_id)


class Clock:
    """A monotonic clock the test moves forward."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    s = CountingStore(tmp_path / DB_FILE_NAME)
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(store: CountingStore, clock: Clock) -> ApiKeyVerifier:
    return ApiKeyVerifier(store, clock=clock)


def _revoke_elsewhere(path: Path, tenant: TenantId) -> None:
    other = SQLiteStore(path)  # another connection, as another process would have
    try:
        assert other.revoke_api_keys(tenant, now=0.0, key_id=None) == 1
    finally:
        other.close()


def test_when_a_key_was_verified_then_cached_serves_it_without_reading_the_store(
    store: CountingStore, verifier: ApiKeyVerifier, clock: Clock
) -> None:
    key = new_api_key(store, "acme")
    assert verifier.cached(key) is None  # never verified: the slow path decides
    assert store.reads == 0
    assert verifier.verify(key) == "acme"
    assert store.reads == 1
    for step in range(50):
        clock.now += REVALIDATE_SECONDS / 100
        assert verifier.cached(key) == "acme", step
    assert store.reads == 1
    clock.now += REVALIDATE_SECONDS  # the second is over: the record is read again
    assert verifier.cached(key) is None
    assert verifier.verify(key) == "acme"
    assert store.reads == 2
    assert verifier.cached(key) == "acme"


def test_when_another_key_is_presented_then_cached_does_not_vouch_for_it(
    store: CountingStore, verifier: ApiKeyVerifier
) -> None:
    key = new_api_key(store, "acme")
    other = new_api_key(store, "globex")
    assert verifier.verify(key) == "acme"
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert verifier.cached(other) is None
    assert verifier.cached(forged) is None
    assert verifier.verify(forged) is None


def test_when_revoked_through_the_same_store_object_then_refused_at_once(
    store: CountingStore, verifier: ApiKeyVerifier
) -> None:
    key = new_api_key(store, "acme")
    assert verifier.verify(key) == "acme"
    assert verifier.cached(key) == "acme"
    store.revoke_api_keys("acme", now=0.0, key_id=None)
    assert verifier.cached(key) is None  # no time passed: the generation changed
    assert verifier.verify(key) is None


def test_when_the_tenant_is_erased_through_the_same_store_object_then_refused_at_once(
    store: CountingStore, verifier: ApiKeyVerifier
) -> None:
    key = new_api_key(store, "acme")
    assert verifier.verify(key) == "acme"
    store.erase_tenant("acme")
    assert verifier.cached(key) is None
    assert verifier.verify(key) is None


def test_when_revoked_through_another_store_object_then_refused_after_the_revalidation(
    store: CountingStore, verifier: ApiKeyVerifier, clock: Clock, tmp_path: Path
) -> None:
    key = new_api_key(store, "acme")
    keep = new_api_key(store, "globex")
    assert verifier.verify(key) == "acme"
    assert verifier.verify(keep) == "globex"
    _revoke_elsewhere(tmp_path / DB_FILE_NAME, "acme")
    clock.now += REVALIDATE_SECONDS + 0.001
    assert verifier.cached(key) is None
    assert verifier.verify(key) is None
    assert verifier.cached(key) is None  # a refused key is not cached either
    # the other tenant's key is read again, and stands
    assert verifier.cached(keep) is None
    assert verifier.verify(keep) == "globex"
    assert verifier.cached(keep) == "globex"


def test_when_revoked_elsewhere_with_the_real_clock_then_refused_after_the_revalidation(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / DB_FILE_NAME)
    try:
        verifier = ApiKeyVerifier(store)
        key = new_api_key(store, "acme")
        assert verifier.verify(key) == "acme"
        _revoke_elsewhere(tmp_path / DB_FILE_NAME, "acme")
        time.sleep(REVALIDATE_SECONDS + 0.05)
        assert verifier.cached(key) is None
        assert verifier.verify(key) is None
    finally:
        store.close()


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the background refresh did not happen"
        time.sleep(0.005)


def test_when_a_key_is_used_near_the_end_of_its_second_then_it_is_read_again_ahead(
    store: CountingStore, verifier: ApiKeyVerifier, clock: Clock
) -> None:
    # requests with a busy key never find it expired: the record is read again in the
    # background during the last REFRESH_AHEAD_SECONDS, and the entry trusted from then
    key = new_api_key(store, "acme")
    assert verifier.verify(key) == "acme"
    clock.now += REVALIDATE_SECONDS - REFRESH_AHEAD_SECONDS / 2
    assert verifier.cached(key) == "acme"  # still trusted; the refresh is started
    _until(lambda: store.reads == 2)
    _until(lambda: not verifier._refreshing)
    clock.now += REFRESH_AHEAD_SECONDS  # past the first second: the refreshed entry holds
    assert verifier.cached(key) == "acme"
    assert store.reads == 2


def test_when_a_key_is_revoked_elsewhere_then_the_refresh_ahead_drops_it_early(
    store: CountingStore, verifier: ApiKeyVerifier, clock: Clock, tmp_path: Path
) -> None:
    key = new_api_key(store, "acme")
    assert verifier.verify(key) == "acme"
    _revoke_elsewhere(tmp_path / DB_FILE_NAME, "acme")
    clock.now += REVALIDATE_SECONDS - REFRESH_AHEAD_SECONDS / 2
    assert verifier.cached(key) == "acme"  # within its second, as before; refresh starts
    _until(lambda: not verifier._refreshing and store.reads == 2)
    assert verifier.cached(key) is None  # before the second is over
    assert verifier.verify(key) is None


def test_when_requests_bring_one_unverified_key_together_then_it_is_hashed_once(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a cold start: every connection's first request carries the same key, none cached
    key = new_api_key(store, "acme")
    verifier = ApiKeyVerifier(store)
    hashed: list[str] = []
    real = apikeys._matches

    def slow_matches(secret: str, record: ApiKeyRecord) -> bool:
        hashed.append(secret)
        time.sleep(0.05)  # long enough for every thread to arrive while it runs
        return real(secret, record)

    monkeypatch.setattr(apikeys, "_matches", slow_matches)
    start = threading.Barrier(8)

    def one() -> TenantId | None:
        start.wait()
        return verifier.verify(key)

    with ThreadPoolExecutor(8) as pool:
        tenants = list(pool.map(lambda _: one(), range(8)))
    assert tenants == ["acme"] * 8
    assert len(hashed) == 1  # the others found its result cached
    assert store.reads == 8  # each still read the record (a revocation counts at once)
    assert not verifier._verifying  # nothing left behind


def test_when_wrong_keys_arrive_together_then_each_is_refused_and_none_is_remembered(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_api_key(store, "acme")
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    verifier = ApiKeyVerifier(store)
    hashed: list[str] = []
    real = apikeys._matches

    def counting(secret: str, record: ApiKeyRecord) -> bool:
        hashed.append(secret)
        return real(secret, record)

    monkeypatch.setattr(apikeys, "_matches", counting)
    with ThreadPoolExecutor(4) as pool:
        tenants = list(pool.map(lambda _: verifier.verify(wrong), range(4)))
    assert tenants == [None] * 4
    assert len(hashed) == 4  # a refusal is not cached: each attempt is hashed
    assert verifier.cached(wrong) is None
    assert verifier.verify(key) == "acme"
    assert not verifier._verifying
