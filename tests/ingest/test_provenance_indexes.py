"""``RequestProvenance.seal_content`` indexes what a handler seals, or does not seal it.

Content a handler derives from a request (a parsed document, an agent's output, a page
fetched from the tenant's connected source) is the tenant's customer content: sealing
it puts its fingerprints in the net, so a verbatim copy is not vouched for as operator
data. The body the middleware streamed is indexed by the middleware itself; sealing
that same body again does not index it twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from corpus import prose
from kg_testing import make_guard, mint_unchecked, running_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard
from kairo_guard.core.exceptions import ContentRefused, StoreError
from kairo_guard.core.types import SEAL_FIELD, DataClass, TenantId
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.ingest.provenance import RequestProvenance
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore

DOC = prose("acme-agent-output", 2)[:600]
"""A ~600-character document of acme's: what an agent wrote for the tenant."""


class CountingStore(SQLiteStore):
    """The SQLite store, counting fingerprint writes; optionally unable to write them."""

    def __init__(self, path: Path, *, fail: bool = False) -> None:
        super().__init__(path)
        self.fail = fail
        self.writes = 0

    def add_fingerprints(self, tenant: TenantId, fingerprints: Iterable[int]) -> None:
        if self.fail:
            raise StoreError("cannot write fingerprints: database or disk is full")
        self.writes += 1
        super().add_fingerprints(tenant, fingerprints)


def _guard(tmp_path: Path, name: str, *, fail: bool = False) -> Guard:
    home = tmp_path / name
    home.mkdir()
    return make_guard(home, pii_gate=False, store=CountingStore(home / DB_FILE_NAME, fail=fail))


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[Guard]:
    with _guard(tmp_path, "counted") as g:
        yield g


def test_when_a_handler_seals_content_then_a_verbatim_copy_is_refused_as_operator_data(
    counted: Guard,
) -> None:
    provenance = RequestProvenance(counted, "acme", "http")
    provenance.seal_content({"output": DOC}, source="agent-run")
    with pytest.raises(ContentRefused) as refused:
        counted.seal_operator_data({"text": DOC}, source="web-crawl")
    assert refused.value.rule == FINGERPRINT_RULE


def test_when_a_handler_seals_content_then_a_copy_vetted_earlier_blocks_at_a_shared_sink(
    counted: Guard,
) -> None:
    copy = {"text": DOC}
    vetted = mint_unchecked(counted, copy, data_class=DataClass.OPERATOR_PUBLIC)
    RequestProvenance(counted, "acme", "http").seal_content({"output": DOC})
    report = counted.check(
        [{**copy, SEAL_FIELD: vetted}], sink=counted.resolve_sink("corpus", kind="shared-training")
    )
    assert report.blocked == 1
    assert report.violations[0].rule == FINGERPRINT_RULE


def test_when_the_index_cannot_be_written_then_seal_content_fails_and_records_no_provenance(
    tmp_path: Path,
) -> None:
    with _guard(tmp_path, "unwritable", fail=True) as guard:
        provenance = RequestProvenance(guard, "acme", "http")
        with pytest.raises(StoreError):
            provenance.seal_content({"output": DOC})
        assert guard.tenancy.export.export("acme")["sections"]["provenance"] == []


def _app(guard: Guard) -> GuardMiddleware:
    async def documents(request: Request) -> JSONResponse:
        body = await request.body()
        provenance: RequestProvenance = request.scope["kairo_guard"]
        writes = guard.store.writes  # type: ignore[attr-defined]
        again = provenance.seal_content(body, source="upload")
        record: dict[str, Any] = {"id": "d-1", **orjson.loads(body)}
        derived = provenance.seal_content(record, source="upload")
        return JSONResponse(
            {
                "again": again,
                "derived": derived,
                "writes": [writes, guard.store.writes],  # type: ignore[attr-defined]
            }
        )

    return GuardMiddleware(
        Starlette(routes=[Route("/documents", documents, methods=["POST"])]), guard=guard
    )


def test_when_a_handler_seals_the_body_the_middleware_indexed_then_it_is_not_indexed_again(
    counted: Guard,
) -> None:
    key = new_api_key(counted.store, "acme")
    body = orjson.dumps({"title": "Agent notes", "text": DOC})
    with running_server(_app(counted)) as url:
        response = httpx.post(
            f"{url}/documents", content=body, headers={"authorization": f"Bearer {key}"}
        )
    assert response.status_code == 200
    data = response.json()
    assert counted.open_seal(data["again"]).digest == hashlib.sha256(body).hexdigest()
    # the body: spooled by the middleware (no index write on the request path) and
    # not indexed again by seal_content; the derived record: indexed at once
    before, after = data["writes"]
    assert (before, after) == (0, 1)


def test_customer_content_cannot_be_sealed_by_its_digest_alone(guard: Guard) -> None:
    digest = hashlib.sha256(orjson.dumps({"output": DOC})).hexdigest()
    with pytest.raises(ValueError, match="a digest alone cannot be indexed"):
        guard.sealer.seal_digest(digest, tenant="acme", data_class="customer_content")
    # a copy vetted later is refused only if the content was indexed: nothing was
    assert guard.store.list_provenance("acme") == []
    telemetry = guard.sealer.seal_digest(digest, tenant="acme", data_class="usage_telemetry")
    assert guard.open_seal(telemetry).data_class.value == "usage_telemetry"


def test_when_a_handler_seals_the_body_under_its_own_source_then_it_gets_the_body_seal(
    guard: Guard,
) -> None:
    key = new_api_key(guard.store, "acme")
    body = orjson.dumps({"title": "Agent notes", "text": DOC})
    seen: dict[str, str] = {}

    async def documents(request: Request) -> JSONResponse:
        await request.body()
        provenance: RequestProvenance = request.scope["kairo_guard"]
        seen["own"] = provenance.seal_content(body)
        seen["body"] = provenance.seal or ""
        seen["other"] = provenance.seal_content(body, source="upload")
        return JSONResponse({})

    app = GuardMiddleware(
        Starlette(routes=[Route("/documents", documents, methods=["POST"])]), guard=guard
    )
    with running_server(app) as url:
        headers = {"authorization": f"Bearer {key}"}
        assert httpx.post(f"{url}/documents", content=body, headers=headers).status_code == 200
    assert seen["own"] == seen["body"]
    other = guard.open_seal(seen["other"])
    assert (other.digest, other.source) == (hashlib.sha256(body).hexdigest(), "upload")
    guard.indexer.drain()
    assert guard.fingerprints.overlap({"text": f"Reprinted: {DOC}"}) is not None
