"""Rules as data, evaluated deny-overrides; no rule that allows means block.

A decision depends only on the *set* of rules, never their order or duplicates: every
matching deny is collected, the one reported first is the lowest ``(priority, id)``.
Allow rules apply only to verified, unexpired records, and a rule that would let
customer content or usage telemetry into a shared sink, or one tenant's content into
another's fine-tune, is refused when the policy is built (invariants I1, I2).
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from kairo_guard.core.exceptions import PolicyError
from kairo_guard.core.types import SHARED_SINK_KINDS, DataClass, Outcome, SinkKind

RULE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
DEFAULT_PRIORITY = 100
POLICY_VERSION = "kg-policy-1"


class Effect(enum.StrEnum):
    """What a matching rule does."""

    ALLOW = "allow"
    DENY = "deny"


class Relation(enum.StrEnum):
    """How the record's tenant relates to the sink's tenant."""

    ANY = "any"
    SAME = "same"
    OTHER = "other"


class Flag(enum.StrEnum):
    """Boolean facts about a record at a sink that rules can require."""

    SEALED = "sealed"
    SEAL_VALID = "seal_valid"
    DIGEST_MATCH = "digest_match"
    VERIFIED = "verified"
    EXPIRED = "expired"
    AGREEMENT_ACTIVE = "agreement_active"
    TENANT_CONTEXT = "tenant_context"


class Facts(NamedTuple):
    """What the checks found out about one record at one sink; hashable for caching.

    ``data_class`` is the effective class: unknown provenance and anything inside a
    tenant's request context (unless verified permitting data) is customer content.
    """

    data_class: DataClass
    sink_kind: SinkKind
    relation: Relation  # SAME or OTHER (never ANY); OTHER at shared sinks
    sealed: bool
    seal_valid: bool
    digest_match: bool
    expired: bool
    agreement_active: bool
    tenant_context: bool
    source: str | None

    def flag(self, flag: Flag) -> bool:
        """Return the value of one flag."""
        if flag is Flag.VERIFIED:
            return self.seal_valid and self.digest_match
        return bool(getattr(self, flag.value))


@dataclass(frozen=True)
class Rule:
    """One rule. ``None`` for a matcher means any; ``when`` lists flags and the value
    each must have; ``sources`` are shell-style patterns on the label's source."""

    id: str
    effect: Effect
    reason: str
    data_classes: frozenset[DataClass] | None = None
    sink_kinds: frozenset[SinkKind] | None = None
    tenant: Relation = Relation.ANY
    when: tuple[tuple[Flag, bool], ...] = ()
    sources: tuple[str, ...] | None = None
    priority: int = DEFAULT_PRIORITY

    def matches(self, facts: Facts) -> bool:
        """True if every matcher of the rule holds for ``facts``."""
        if self.data_classes is not None and facts.data_class not in self.data_classes:
            return False
        if self.sink_kinds is not None and facts.sink_kind not in self.sink_kinds:
            return False
        if self.tenant is not Relation.ANY and facts.relation is not self.tenant:
            return False
        if any(facts.flag(flag) is not value for flag, value in self.when):
            return False
        if self.sources is not None:
            return facts.source is not None and any(
                fnmatch.fnmatchcase(facts.source, pattern) for pattern in self.sources
            )
        return True


class Decision(NamedTuple):
    """The verdict on one record: outcome, the deciding rule, why, and every deny hit."""

    outcome: Outcome
    rule: str
    reason: str
    denied_by: tuple[str, ...] = ()
    owner: str | None = None
    """The tenant a content check found the record to belong to, if any."""


def rule(
    id: str,
    effect: Effect | str,
    reason: str,
    *,
    data_classes: Iterable[DataClass | str] | None = None,
    sink_kinds: Iterable[SinkKind | str] | None = None,
    tenant: Relation | str = Relation.ANY,
    when: Mapping[Flag | str, bool] | None = None,
    sources: Iterable[str] | None = None,
    priority: int = DEFAULT_PRIORITY,
) -> Rule:
    """Build a :class:`Rule` from loosely typed parts (as config files give them).

    Raises:
        PolicyError: for an invalid id or an unknown class, kind, relation or flag.
    """
    if not isinstance(id, str) or RULE_ID.fullmatch(id) is None:
        raise PolicyError(f"rule id {id!r} must match {RULE_ID.pattern}", rule_id=str(id))
    try:
        return Rule(
            id=id,
            effect=Effect(effect),
            reason=str(reason),
            data_classes=None if data_classes is None else frozenset(map(DataClass, data_classes)),
            sink_kinds=None if sink_kinds is None else frozenset(map(SinkKind, sink_kinds)),
            tenant=Relation(tenant),
            when=tuple(sorted((Flag(k), bool(v)) for k, v in (when or {}).items())),
            sources=None if sources is None else tuple(sorted(sources)),
            priority=int(priority),
        )
    except ValueError as exc:
        raise PolicyError(f"rule {id!r}: {exc}", rule_id=id) from exc


_SHARED = frozenset(SHARED_SINK_KINDS)
_RESTRICTING = frozenset({DataClass.CUSTOMER_CONTENT, DataClass.USAGE_TELEMETRY})
_TENANT_SINK = frozenset({SinkKind.TENANT_FINE_TUNE})
_CC = frozenset({DataClass.CUSTOMER_CONTENT})

BUILTIN_RULES: tuple[Rule, ...] = (
    rule("seal.missing", "deny", "no provenance seal: unknown provenance is customer content",
         when={"sealed": False}, priority=10),
    rule("seal.invalid", "deny", "seal does not verify: treated as customer content",
         when={"sealed": True, "seal_valid": False}, priority=11),
    rule("seal.digest-mismatch", "deny",
         "seal was made for other content (digest mismatch): treated as customer content",
         when={"seal_valid": True, "digest_match": False}, priority=12),
    rule("retention.expired", "deny", "content is past its retention period",
         when={"expired": True}, priority=20),
    rule("context.tenant-request", "deny",
         "checked inside a tenant's request context: treated as that tenant's customer content",
         data_classes=_CC, sink_kinds=_SHARED, when={"tenant_context": True}, priority=30),
    rule("class.usage-telemetry", "deny",
         "raw usage telemetry is per-tenant personal data; only aggregated telemetry may pass",
         data_classes={DataClass.USAGE_TELEMETRY}, priority=40),
    rule("class.customer-content-shared", "deny",
         "customer content never reaches a shared training, fine-tuning or evaluation sink",
         data_classes=_CC, sink_kinds=_SHARED, priority=41),
    rule("tenant.cross-tenant", "deny", "another tenant's content never reaches this fine-tune",
         data_classes=_CC, sink_kinds=_TENANT_SINK, tenant="other", priority=42),
    rule("agreement.inactive", "deny", "the tenant has no active fine-tune agreement",
         data_classes=_CC, sink_kinds=_TENANT_SINK, tenant="same",
         when={"agreement_active": False}, priority=43),
    rule("class.anonymized-telemetry-tenant-sink", "deny",
         "anonymized telemetry is for shared routing models, not a tenant fine-tune",
         data_classes={DataClass.ANONYMIZED_TELEMETRY}, sink_kinds=_TENANT_SINK, priority=44),
)  # fmt: skip

DEFAULT_ALLOW_RULES: tuple[Rule, ...] = (
    rule("allow.tenant-own-content", "allow",
         "the tenant's own verified content, under an active fine-tune agreement",
         data_classes=_CC, sink_kinds=_TENANT_SINK, tenant="same",
         when={"verified": True, "agreement_active": True}),
    rule("allow.anonymized-telemetry-shared", "allow",
         "verified anonymized telemetry minted by the aggregator",
         data_classes={DataClass.ANONYMIZED_TELEMETRY}, sink_kinds=_SHARED,
         when={"verified": True}),
    rule("allow.operator-public", "allow", "verified operator data (public, licensed, synthetic)",
         data_classes={DataClass.OPERATOR_PUBLIC}, when={"verified": True}),
)  # fmt: skip

DEFAULT_DENY = Decision(Outcome.BLOCK, "default.deny", "no rule allows this record here")
_INVARIANT = Decision(
    Outcome.BLOCK, "invariant.restricted-class", "restricted data never reaches a shared sink"
)


def check_rule_safe(r: Rule) -> None:
    """Refuse an allow rule that could break invariants I1 or I2.

    Raises:
        PolicyError: naming the rule and the invariant.
    """
    if r.effect is not Effect.ALLOW:
        return
    classes = r.data_classes if r.data_classes is not None else frozenset(DataClass)
    kinds = r.sink_kinds if r.sink_kinds is not None else frozenset(SinkKind)
    if classes & _RESTRICTING and kinds & _SHARED:
        raise PolicyError(
            f"rule {r.id!r} would allow customer content or usage telemetry into a shared "
            "sink (invariant I1); narrow data_classes or sink_kinds",
            rule_id=r.id,
        )
    if DataClass.USAGE_TELEMETRY in classes:
        raise PolicyError(f"rule {r.id!r} would allow raw usage telemetry", rule_id=r.id)
    if DataClass.CUSTOMER_CONTENT in classes and (
        r.tenant is not Relation.SAME or (Flag.AGREEMENT_ACTIVE, True) not in r.when
    ):
        raise PolicyError(
            f"rule {r.id!r} would allow customer content into a fine-tune other than its own "
            'tenant\'s under an active agreement (invariant I2); set tenant = "same" and '
            "when = { agreement_active = true }",
            rule_id=r.id,
        )


@dataclass
class Policy:
    """The built-in deny rules, the default allows, and any extra rules, deduplicated.

    Built-in deny rules cannot be removed; extra rules can only narrow what passes or
    allow what no built-in rule denies.
    """

    extra_rules: Iterable[Rule] = ()
    include_default_allows: bool = True
    rules: tuple[Rule, ...] = field(init=False)
    _cache: dict[Facts, Decision] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        by_id: dict[str, Rule] = {}
        defaults = DEFAULT_ALLOW_RULES if self.include_default_allows else ()
        for r in (*BUILTIN_RULES, *defaults, *self.extra_rules):
            check_rule_safe(r)
            seen = by_id.get(r.id)
            if seen is not None and seen != r:
                raise PolicyError(f"two different rules share the id {r.id!r}", rule_id=r.id)
            by_id[r.id] = r
        self.rules = tuple(sorted(by_id.values(), key=lambda r: (r.priority, r.id)))
        self._denies = tuple(r for r in self.rules if r.effect is Effect.DENY)
        self._allows = tuple(r for r in self.rules if r.effect is Effect.ALLOW)

    def decide(self, facts: Facts) -> Decision:
        """Return the decision for ``facts`` (cached: facts are few and decisions pure)."""
        cached = self._cache.get(facts)
        if cached is None:
            cached = self._evaluate(facts)
            if len(self._cache) >= 65536:
                self._cache.clear()
            self._cache[facts] = cached
        return cached

    def _evaluate(self, facts: Facts) -> Decision:
        denied = [r for r in self._denies if r.matches(facts)]
        if denied:
            first = denied[0]
            return Decision(Outcome.BLOCK, first.id, first.reason, tuple(r.id for r in denied))
        if not facts.flag(Flag.VERIFIED) or facts.expired:
            return DEFAULT_DENY
        for r in self._allows:
            if r.matches(facts):
                if facts.sink_kind in _SHARED and facts.data_class in _RESTRICTING:
                    return _INVARIANT  # unreachable through check_rule_safe; kept as a net
                return Decision(Outcome.ALLOW, r.id, r.reason)
        return DEFAULT_DENY
