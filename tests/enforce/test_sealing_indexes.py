"""Sealing customer content indexes it: no seal without its fingerprints in the net.

A document sealed as a tenant's customer content through ``Guard.seal`` or
``Guard.label_record`` must be in the fingerprint net, so that a verbatim copy is
neither vouched for as operator data nor let through a shared sink under a seal vetted
earlier. If the index cannot be written, nothing is sealed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from corpus import prose
from kg_testing import make_guard, mint_unchecked

from kairo_guard import Guard, KeyRing
from kairo_guard.core.exceptions import ContentRefused, StoreError
from kairo_guard.core.types import SEAL_FIELD, DataClass, TenantId
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore

DOC = prose("acme-supply-contract", 2)[:600]
"""A ~600-character document of acme's."""

Sealing = Callable[[Guard, dict[str, Any]], str]


def _seal(guard: Guard, record: dict[str, Any]) -> str:
    return guard.seal(record, tenant="acme", source="upload")


def _label_record(guard: Guard, record: dict[str, Any]) -> str:
    return str(guard.label_record(record, tenant="acme", source="upload")[SEAL_FIELD])


SEALINGS = pytest.mark.parametrize("sealing", [_seal, _label_record], ids=["seal", "label_record"])


class UnwritableIndex(SQLiteStore):
    """A store whose fingerprint table cannot be written (a full disk, a lost server)."""

    def add_fingerprints(self, tenant: TenantId, fingerprints: Iterable[int]) -> None:
        raise StoreError("cannot write fingerprints: database or disk is full")


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Guard]:
    home = tmp_path / "unwritable"
    home.mkdir()
    with make_guard(home, pii_gate=False, store=UnwritableIndex(home / DB_FILE_NAME)) as g:
        yield g


def _events(guard: Guard, event: str | None = None) -> list[dict[str, Any]]:
    guard.audit.flush()
    entries = [orjson.loads(line) for line in guard.audit.path.read_bytes().splitlines()]
    return [e for e in entries if event in (None, e.get("event"))]


@SEALINGS
def test_when_a_document_is_sealed_then_a_verbatim_copy_is_refused_as_operator_data(
    guard: Guard, sealing: Sealing
) -> None:
    sealing(guard, {"title": "Supply contract", "text": DOC})
    copy = {"text": DOC}
    with pytest.raises(ContentRefused) as refused:
        guard.seal_operator_data(copy, source="web-crawl")
    assert refused.value.rule == FINGERPRINT_RULE


@SEALINGS
def test_when_a_document_is_sealed_then_a_copy_vetted_earlier_blocks_at_a_shared_sink(
    guard: Guard, sealing: Sealing
) -> None:
    copy = {"text": DOC}
    vetted = mint_unchecked(guard, copy, data_class=DataClass.OPERATOR_PUBLIC)
    sealing(guard, {"title": "Supply contract", "text": DOC})
    report = guard.check(
        [{**copy, SEAL_FIELD: vetted}], sink=guard.resolve_sink("corpus", kind="shared-training")
    )
    assert report.blocked == 1
    assert report.violations[0].rule == FINGERPRINT_RULE


@SEALINGS
def test_when_the_index_cannot_be_written_then_sealing_customer_content_fails(
    unwritable: Guard, sealing: Sealing
) -> None:
    with pytest.raises(StoreError):
        sealing(unwritable, {"title": "Supply contract", "text": DOC})
    assert _events(unwritable, "seal") == []


def test_when_usage_telemetry_is_sealed_then_it_is_not_indexed(unwritable: Guard) -> None:
    # Usage events are per-tenant personal data, kept from shared sinks by their sticky
    # label; they are not text to launder, and the aggregator's output is made of them.
    event = {"event": "completion", "model": "summarizer-v2", "detail": DOC}
    seal = unwritable.seal(event, tenant="acme", data_class=DataClass.USAGE_TELEMETRY)
    assert unwritable.open_seal(seal).data_class is DataClass.USAGE_TELEMETRY


def test_when_the_same_record_is_sealed_twice_then_its_fingerprints_are_stored_once(
    guard: Guard,
) -> None:
    record = {"title": "Supply contract", "text": DOC}
    guard.label_record(record, tenant="acme")
    first = list(guard.store.iter_fingerprints())
    guard.label_record(record, tenant="acme")
    assert first
    assert list(guard.store.iter_fingerprints()) == first


def test_when_customer_content_is_sealed_then_the_seal_is_audited_after_its_indexing(
    guard: Guard, ring: KeyRing
) -> None:
    guard.seal({"text": DOC}, tenant="acme")
    events = [e["event"] for e in _events(guard)]
    assert events.index("fingerprints.index") < events.index("seal")
    (indexed,) = _events(guard, "fingerprints.index")
    assert indexed["tenant"] == ring.pseudonym("acme")
    assert indexed["count"] > 0
