"""What the OpenTelemetry layer needs of a guard, as small Protocols.

The scrubbing exporters and the tenant-token helpers are handed "a guard"; this layer
sits below :class:`~kairo_guard.guard.Guard` and never imports it. A ``Guard``
satisfies these Protocols structurally (its ``fingerprints``, ``pii``, ``telemetry``,
``keys``, ``store``, ``settings`` and ``clock()``), and so may anything else with the
same members.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from kairo_guard.core.keys import KeyRing
from kairo_guard.otel.instrumentation import GuardTelemetry


class OverlapIndex(Protocol):
    """Says whose indexed content a text overlaps (the fingerprint index)."""

    def overlap(self, content: object, /) -> object | None:
        """Return the overlap found (any object), or None when the text is no tenant's."""
        ...


class PiiTexts(Protocol):
    """Finds PII entity types in texts (the PII check)."""

    def entity_types_each(self, texts: list[str], /) -> list[list[str]] | None:
        """Per text, the entity types found ([] if none); None if the gate cannot run."""
        ...


class ContentJudges(Protocol):
    """What decides that a telemetry value is content, and where scrub counts go."""

    @property
    def fingerprints(self) -> OverlapIndex:
        """The index of every tenant's ingested content."""
        ...

    @property
    def pii(self) -> PiiTexts | None:
        """The PII check, or None when the gate is off."""
        ...

    @property
    def telemetry(self) -> GuardTelemetry:
        """The guard's own tracer and meter."""
        ...


class ErasureRecords(Protocol):
    """When tenants were erased."""

    def erased_tenants(self) -> Mapping[str, float]:
        """Tenant pseudonym -> erasure time (Unix seconds)."""
        ...


class PropagationSettings(Protocol):
    """The ``[propagation]`` settings tokens need."""

    @property
    def token_ttl(self) -> int:
        """Lifetime of a tenant token, in seconds."""
        ...


class TokenSettings(Protocol):
    """Settings that hold a ``[propagation]`` section."""

    @property
    def propagation(self) -> PropagationSettings:
        """The ``[propagation]`` section."""
        ...


class TokenAuthority(Protocol):
    """What tenant tokens need: the key ring that seals and opens them, their lifetime,
    the clock, and the erasure records (a token issued before an erasure is refused)."""

    @property
    def keys(self) -> KeyRing:
        """The key ring; its ``baggage`` subkeys seal tokens, its pseudonyms name tenants."""
        ...

    @property
    def store(self) -> ErasureRecords:
        """Where erasures are recorded."""
        ...

    @property
    def settings(self) -> TokenSettings:
        """Where ``[propagation] token_ttl`` is read."""
        ...

    def clock(self) -> float:
        """Now, in Unix seconds."""
        ...
