"""A label derived for transformed content (``Guard.derive_seal``): the output of a map
over a tenant's record inherits its source's label whole, so retention runs from the
source whatever the policy says by then, and its text is indexed like any customer
content."""

from __future__ import annotations

import pytest
from corpus import prose

from kairo_guard import Guard
from kairo_guard.core.content import content_digest
from kairo_guard.core.types import SEAL_FIELD, DataClass


def test_a_derived_label_keeps_the_source_expiry_after_the_policy_changes(guard: Guard) -> None:
    guard.set_retention("acme", "customer_content", 3600)
    record = guard.label_record({"text": "acme ticket"}, tenant="acme")
    source = guard.open_seal(record[SEAL_FIELD])
    assert source.expires_at == source.created_at + 3600
    guard.set_retention("acme", "customer_content", 86_400 * 365)  # a longer policy later
    derived = guard.open_seal(guard.derive_seal({"tokens": [1, 2, 3]}, source))
    assert derived._replace(digest="", key_id="") == source._replace(digest="", key_id="")
    assert derived.digest == content_digest({"tokens": [1, 2, 3]})
    fresh = guard.open_seal(guard.seal({"tokens": [1, 2, 3]}, tenant="acme"))
    assert fresh.expires_at != derived.expires_at  # what plain sealing would have given


def test_derived_customer_content_is_indexed_and_refused_at_shared_sinks(guard: Guard) -> None:
    secret = prose("derive-seal", paragraphs=2)
    source = guard.open_seal(guard.label_record({"text": "short"}, tenant="acme")[SEAL_FIELD])
    guard.derive_seal({"text": secret}, source)
    report = guard.check([{"text": f"Public notes. {secret[:600]}"}], sink="shared-training")
    assert report.by_rule == {"fingerprint.tenant-content": 1}


def test_only_a_tenant_restricting_label_can_be_derived(guard: Guard) -> None:
    source = guard.open_seal(guard.label_record({"text": "x"}, tenant="acme")[SEAL_FIELD])
    with pytest.raises(ValueError, match="tenant"):
        guard.derive_seal({"text": "y"}, source._replace(tenant=None))
    with pytest.raises(ValueError, match="cannot be sealed directly"):
        guard.derive_seal({"text": "y"}, source._replace(data_class=DataClass.OPERATOR_PUBLIC))
