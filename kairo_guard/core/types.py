"""The small vocabulary every module shares: enumerations, aliases and protocols."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeAlias

JSONValue: TypeAlias = (
    "bool | int | float | str | Sequence[JSONValue] | Mapping[str, JSONValue] | None"
)
"""Any value that encodes as JSON."""

TenantId: TypeAlias = str
"""An account id: ``[A-Za-z0-9._-]{1,128}``; validate with :func:`validate_tenant`."""

SEAL_FIELD = "_kairo"
"""The key that carries a record's seal in JSON records and the column in Arrow tables."""

TENANT_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")


class DataClass(enum.StrEnum):
    """What a piece of data is, which decides where it may go."""

    CUSTOMER_CONTENT = "customer_content"
    USAGE_TELEMETRY = "usage_telemetry"
    ANONYMIZED_TELEMETRY = "anonymized_telemetry"
    OPERATOR_PUBLIC = "operator_public"

    @property
    def restricts(self) -> bool:
        """True for classes whose labels are sticky and restrict where data may go."""
        return self in _RESTRICTING

    @property
    def tenant_bound(self) -> bool:
        """True for classes that always name a tenant."""
        return self in _RESTRICTING


_RESTRICTING = frozenset({DataClass.CUSTOMER_CONTENT, DataClass.USAGE_TELEMETRY})


class SinkKind(enum.StrEnum):
    """Where records are headed; ``tenant-fine-tune`` sinks also name their tenant."""

    SHARED_TRAINING = "shared-training"
    SHARED_FINE_TUNE = "shared-fine-tune"
    SHARED_EVAL = "shared-eval"
    TENANT_FINE_TUNE = "tenant-fine-tune"

    @property
    def shared(self) -> bool:
        """True for sinks whose output serves every customer."""
        return self is not SinkKind.TENANT_FINE_TUNE


SHARED_SINK_KINDS = frozenset(k for k in SinkKind if k.shared)


class Mode(enum.StrEnum):
    """What a sink does with a refused record."""

    ENFORCE = "enforce"
    """Raise :class:`~kairo_guard.core.exceptions.IsolationViolation` (CLI: exit 1)."""
    FILTER = "filter"
    """Drop refused records, pass the rest, report."""
    OBSERVE = "observe"
    """Record the decision, pass everything: a rollout's logging phase."""


class Outcome(enum.StrEnum):
    """A decision's verdict."""

    ALLOW = "allow"
    BLOCK = "block"


def validate_tenant(tenant: object) -> TenantId:
    """Return ``tenant`` if it is a well-formed tenant id.

    Raises:
        ValueError: with the accepted pattern, if it is not.
    """
    if not isinstance(tenant, str) or TENANT_PATTERN.fullmatch(tenant) is None:
        raise ValueError(
            f"invalid tenant id {tenant!r}: use 1-128 characters from A-Z a-z 0-9 . _ -"
        )
    return tenant


class Sealed(NamedTuple):
    """Content that is not a JSON object (text, bytes, a list) together with its seal."""

    content: object
    seal: str


class AuditAppender(Protocol):
    """Where audit entries go: :class:`~kairo_guard.audit.log.AuditLog` or a test double."""

    def append(self, entry: Mapping[str, Any]) -> None:
        """Buffer one audit entry (digests and pseudonyms, never content)."""
        ...
