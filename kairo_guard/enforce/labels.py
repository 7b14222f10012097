"""What a record's label means at a sink: the facts the policy decides on.

A record is split into its content and its seal; the seal's label (verified or not)
meets the sink and the ambient tenant context here. Unknown provenance is customer
content (I4): no label, a bad seal or a digest that does not match. Inside a tenant's
request context every restricting label is that tenant's customer content too; only
verified permitting labels keep their class (I5). A label of an erased tenant, sealed
up to its erasure, is refused (I8).
"""

from __future__ import annotations

from collections.abc import Mapping

from kairo_guard.core.columnar import CANONICAL_FIELD, columnar_content
from kairo_guard.core.policy import Decision, Facts, Relation
from kairo_guard.core.seal import Label
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import SEAL_FIELD, DataClass, Outcome, Sealed, TenantId

ERASED_RULE = "tenant.erased"
AMBIGUOUS_SEAL_RULE = "seal.ambiguous"
"""The rule of a refusal for a ``Sealed`` record whose content carries a seal of its own."""
AMBIGUOUS_SEAL = (
    "the record is given with a seal and its content holds another under _kairo: "
    "which one applies is unclear"
)
_CC = DataClass.CUSTOMER_CONTENT
_PERMITTING = frozenset({DataClass.ANONYMIZED_TELEMETRY, DataClass.OPERATOR_PUBLIC})


def split_record(item: object) -> tuple[object, object]:
    """Return ``(content, seal)`` of a record; the seal is None when there is none."""
    if isinstance(item, Sealed):
        return item.content, item.seal
    if isinstance(item, Mapping):
        if CANONICAL_FIELD in item:  # a row of a columnar format: see core.columnar
            return columnar_content(item), item.get(SEAL_FIELD)
        return item, item.get(SEAL_FIELD)
    return item, None


def ambiguous(item: object) -> bool:
    """True for a ``Sealed`` record whose content holds a seal of its own: the
    content's digest skips the inner one, so neither may decide."""
    return (
        isinstance(item, Sealed)
        and isinstance(item.content, Mapping)
        and SEAL_FIELD in item.content
    )


def label_facts(
    label: Label | None,
    sink: Sink,
    ambient: TenantId | None,
    *,
    sealed: bool,
    valid: bool,
    match: bool,
    expired: bool,
    agreement: bool,
) -> Facts:
    """Return the facts the policy decides a record on.

    Args:
        label: the seal's label, or None (no seal, or one that did not verify).
        sink: where the record is going.
        ambient: the tenant whose request context is active, if any.
        sealed: the record carries a seal.
        valid: the seal verified.
        match: the seal's digest matches the record's content.
        expired: the label's retention has passed.
        agreement: the sink's tenant has an active fine-tune agreement.
    """
    verified = valid and match
    tenants: tuple[str | None, ...]
    if label is None or not verified:
        data_class, tenants = _CC, (ambient,) if ambient else ()
    elif ambient is not None and label.data_class not in _PERMITTING:
        data_class, tenants = _CC, (label.tenant, ambient)
    else:
        data_class, tenants = label.data_class, (label.tenant,) if label.tenant else ()
    same = bool(tenants) and sink.tenant is not None and all(t == sink.tenant for t in tenants)
    return Facts(
        data_class=data_class,
        sink_kind=sink.kind,
        relation=Relation.SAME if same else Relation.OTHER,
        sealed=sealed,
        seal_valid=valid,
        digest_match=match,
        expired=expired,
        agreement_active=agreement,
        tenant_context=ambient is not None,
        source=label.source if label is not None else None,
    )


def erasure_checked(
    decision: Decision,
    label: Label | None,
    owner: str | None,
    erased: Mapping[str, float] | None,
) -> tuple[Decision, str | None]:
    """``(decision, owner)``, or the erasure block instead for a label of an erased
    tenant (``owner``: the label's or the ambient tenant's pseudonym)."""
    if label is not None and label.tenant:  # per label, cached by the caller
        block = erased_decision(erased, owner or "", label.created_at)
        if block is not None and (block.rule == ERASED_RULE or decision.outcome is Outcome.ALLOW):
            return block, owner
    return decision, owner


def erased_decision(
    erased: Mapping[str, float] | None, pseudonym: str, created_at: int
) -> Decision | None:
    """Return the block for a label of an erased tenant (``erased`` None: unknown), or None."""
    if erased is None:
        return Decision(Outcome.BLOCK, "guard.error", "cannot read the erased tenants")
    at = erased.get(pseudonym)
    if at is not None and created_at <= at:
        return Decision(Outcome.BLOCK, ERASED_RULE, "the tenant's data was erased")
    return None
