"""The customer identifier index: a customer's email addresses and phone numbers, kept
as keyed hashes when its content is indexed (directly or through the ingestion spool),
refuse operator data that repeats them, at vetting and at a shared sink, by exact
match; other addresses pass; erasure forgets them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kg_testing import make_guard, sealed_record

from kairo_guard import Guard
from kairo_guard.core.exceptions import ContentRefused
from kairo_guard.core.keys import KeyRing
from kairo_guard.detect.identifiers import CustomerIdentifiers, identifiers_in
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.store.spool import encode_body
from kairo_guard.store.spool_append import SegmentAppender

EMAIL = "Maria.Garcia@acme-corp.io"
PHONE = "+44 20 7946 0958"
CRM = {"note": f"Call back {PHONE} or write to {EMAIL} about the renewal."}
RULE = "pii.customer-identifier"


@pytest.fixture
def guard(tmp_path: Path, ring: KeyRing) -> Iterator[Guard]:
    # the PII gate off: what is refused here, only the index refuses
    with make_guard(tmp_path / "state", ring=ring, pii_gate=False) as g:
        new_api_key(g.store, "acme")
        yield g


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail MARIA.garcia@Acme-Corp.io now", [("EMAIL_ADDRESS", b"e:maria.garcia@acme-corp.io")]),
        ("call +1 (415) 555-0132", [("PHONE_NUMBER", b"p:4155550132")]),
        ("call 415.555.0132", [("PHONE_NUMBER", b"p:4155550132")]),
        ("call 4155550132", [("PHONE_NUMBER", b"p:4155550132")]),
        ("call 020 7946 0958", [("PHONE_NUMBER", b"p:2079460958")]),
        ("on 2024-06-01 at 10:30", []),  # a date is not a number to index
        ("order 123456789", []),  # fewer than ten digits
        ("card 4111 1111 1111 1111 9999", []),  # more than fifteen
        ("version 1.2.3456789012", []),  # a version
        ("host 192.168.100.200", []),  # an IP address
        ("call 415.555.0132.", [("PHONE_NUMBER", b"p:4155550132")]),
    ],
)
def test_identifiers_are_normalized_so_one_number_matches_however_written(
    text: str, expected: list[tuple[str, bytes]]
) -> None:
    assert list(identifiers_in(text)) == expected


def test_the_hashes_are_keyed() -> None:
    one, two = CustomerIdentifiers(b"k" * 32), CustomerIdentifiers(b"j" * 32)
    assert one.of_text(EMAIL) == one.of_text(EMAIL.upper())
    assert one.of_text(EMAIL) != two.of_text(EMAIL)


def _refusal(guard: Guard, content: Any) -> ContentRefused:
    with pytest.raises(ContentRefused) as refused:
        guard.seal_operator_data(content, source="docs")
    return refused.value


def test_a_customers_identifiers_refuse_operator_data_and_others_pass(guard: Guard) -> None:
    guard.seal(CRM, tenant="acme", source="crm")  # indexes the content, identifiers too
    laundered = {"text": "For help, call 020 7946 0958 (our team)."}
    refused = _refusal(guard, laundered)
    assert (refused.rule, refused.reason) == (
        RULE, "text holds a customer's identifier: PHONE_NUMBER at $.text"
    )  # fmt: skip
    refused = _refusal(guard, {"a": "ok", "b": f"contact {EMAIL.lower()}"})
    assert refused.reason.endswith("EMAIL_ADDRESS at $.b")
    keyed = _refusal(guard, {EMAIL: "owner"})  # a key holding one: the key is withheld
    assert keyed.reason.endswith("EMAIL_ADDRESS at $.* (a key)")
    for text in (refused.reason, keyed.reason, str(keyed)):
        assert "garcia" not in text.lower()
        assert "7946" not in text
    public = {"text": "Maintainer: Jane Roe <jane.roe@example.org>, +1 415 555 0132"}
    assert guard.seal_operator_data(public, source="docs").startswith("kp1.")


def test_a_shared_sink_refuses_operator_data_vetted_before_the_customer_sent_it(
    guard: Guard,
) -> None:
    record = sealed_record(guard, {"text": f"write to {EMAIL}"}, data_class="operator_public")
    sink = guard.resolve_sink("pretrain", kind="shared-training")
    assert guard.check([record], sink=sink).ok  # nobody sent it yet
    guard.seal(CRM, tenant="acme", source="crm")
    report = guard.check([record], sink=sink)
    assert [v.rule for v in report.violations] == [RULE]


def test_bodies_indexed_from_the_spool_index_their_identifiers(guard: Guard) -> None:
    body = b'{"note": "escalate to %s"}' % EMAIL.encode()
    appender = SegmentAppender(guard.spool_directory)
    assert appender.append([encode_body("acme", "", body)]) is None
    appender.close()
    assert guard.indexer.drain() == 1
    assert _refusal(guard, {"text": f"cc {EMAIL}"}).rule == RULE


def test_erasure_forgets_a_tenants_identifiers(guard: Guard) -> None:
    guard.seal(CRM, tenant="acme", source="crm")
    assert _refusal(guard, {"text": f"cc {EMAIL}"}).rule == RULE
    guard.erase_tenant("acme")
    assert guard.seal_operator_data({"text": f"cc {EMAIL}"}, source="docs").startswith("kp1.")


def test_an_allow_listed_address_in_customers_content_stays_usable(
    tmp_path: Path, ring: KeyRing
) -> None:
    """Customers write to the operator's support address; the operator's own
    documentation may still give it ([pii] allow_list), and only it."""
    home = tmp_path / "state"
    home.mkdir()
    (home / "kairo-guard.toml").write_text('[pii]\nallow_list = ["Support@Kairo.dev"]\n')
    with make_guard(home, ring=ring, pii_gate=False) as guard:
        new_api_key(guard.store, "acme")
        guard.seal({"note": f"cc support@kairo.dev and {EMAIL}"}, tenant="acme", source="crm")
        docs = {"text": "Questions? Write to support@kairo.dev."}
        assert guard.seal_operator_data(docs, source="docs").startswith("kp1.")
        assert _refusal(guard, {"text": f"Questions? Write to {EMAIL}."}).rule == RULE


def test_identifiers_are_remembered_only_inside_a_vetting_block() -> None:
    from kairo_guard.detect.identifiers import CustomerIdentifiers

    index = CustomerIdentifiers(b"k" * 32)
    text = "write to ops@example.org or call 415 555 0132"
    outside = index.found_in(text)
    assert len(outside) == 2
    assert index.found_in(text) is not outside  # nothing kept: the indexer reads bodies once
    with index.remembering():
        first = index.found_in(text)
        assert index.found_in(text) is first  # read once inside the block
    assert index.found_in(text) is not first
    assert index.found_in(text) == first
