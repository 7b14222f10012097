"""``TelemetryAggregator``: the only code path that mints ``anonymized_telemetry``.

Raw usage events are per-tenant personal data. The aggregator keeps only allow-listed
fields (the latency number; categorical dimensions), drops free text, groups events by
time window and dimensions, suppresses every group with fewer than ``k`` distinct
tenants or dominated by one tenant (more than half of its events), and emits statistics
sealed as ``anonymized_telemetry`` with no tenant field.

Only events of tenants that exist count (``tenants``): invented tenant ids are skipped,
so they cannot make up the ``k`` of a group. What ``k`` and the dominance rule do not
stop: one party holding ``k - 1`` real accounts (sybils) that sends known events can
subtract them from a group and learn the remaining tenant's share of it. Against that,
a group's ``count`` and its error count are published with calibrated noise
(:func:`discrete_laplace`, ``epsilon`` split evenly between the two, one event's
presence changing each by at most one): subtracting known events leaves the other
tenant's count give or take the noise (a standard deviation of about 2.8 events at the
default ``epsilon`` of 1), so a tenant's few errors or few requests are hidden; a large
volume is still visible to within that noise.

Categorical values are kept only when they are safe to publish: a value from the
field's declared enumeration, or, without one, a short plain token that at least ``k``
distinct tenants used in the input (a value few tenants use can identify them, or be
their text: ``/docs/acme-merger``). Anything else becomes ``"other"``. Tenants are
counted by keyed pseudonym only; neither ids nor pseudonyms reach the output.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kairo_guard.core.exceptions import ContentError, ContentRefused
from kairo_guard.core.types import SEAL_FIELD, TENANT_PATTERN, AuditAppender, TenantId

DEFAULT_K = 10
DEFAULT_FIELDS = {
    "tenant": "tenant",
    "error_message": "error_message",
    "route": "route",
    "model": "model",
    "latency_ms": "latency_ms",
    "status": "status",
    "error_type": "error_type",
    "ts": "ts",
}
DEFAULT_DIMENSIONS = ("route", "model")
DEFAULT_EPSILON = 1.0
"""Privacy budget per published group: half for its count, half for its error count."""
OTHER = "other"
_LAST_TIMESTAMP = 253402300800  # 10000-01-01: later windows cannot be written as dates
_TOKEN = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
SOURCE = "telemetry-aggregator"
"""The source of every statistics record's label."""


class ShardMinter(Protocol):
    """What the aggregator needs of vetting (:class:`~kairo_guard.enforce.vetting.ShardVetting`)."""

    def vet(
        self, contents: Sequence[object], *, source: str
    ) -> list[str | ContentRefused | ContentError]:
        """Per record in order, its seal or why it was refused."""
        ...


@dataclass
class AggregationReport:
    """What an aggregation run read, kept, skipped and suppressed (no tenant data)."""

    events: int = 0
    used: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    groups: int = 0
    emitted: int = 0
    suppressed_groups: int = 0
    messages_dropped: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    """Statistics records the vetting refused, by rule (strict PII, the net)."""

    def skip(self, reason: str) -> None:
        """Count an event skipped for ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclass
class _Event:
    tenant: str  # pseudonym
    window: int
    dims: tuple[str, ...]
    latency: float
    error: bool
    message: str | None = None  # scrubbed, only when messages are kept


@dataclass
class _Group:
    tenants: set[str] = field(default_factory=set)
    per_tenant: dict[str, int] = field(default_factory=dict)
    messages: dict[str, set[str]] = field(default_factory=dict)  # message -> tenants
    latencies: list[tuple[float, str]] = field(default_factory=list)  # (ms, tenant)
    errors: int = 0


class TelemetryAggregator:
    """Aggregates raw usage events into k-anonymous, sealed statistics.

    Args:
        vetting: vets the output and signs it as a shard of ``anonymized_telemetry``
            (``guard.telemetry_vetting``: it needs the aggregating role's signing key).
        audit: where each run is recorded, counts only (``guard.audit``).
        pseudonym: tenant id -> keyed pseudonym, to count distinct tenants
            (``guard.keys.pseudonym``).
        tenants: the tenants that exist (``guard.store.tenant_ids()``): an event of any
            other tenant id is skipped (``unknown-tenant``), so invented ids cannot make
            up the ``k`` tenants of a group. Real accounts made for the purpose (sybils)
            still count: see the module docstring.
        k: minimum distinct tenants per emitted group (default 10, at least 2).
        window_seconds: width of the time windows.
        dimensions: the categorical fields to group by (default route, model).
        enumerations: per dimension, the values that may be published as they are.
        fields: input field names, by role (see :data:`DEFAULT_FIELDS`).
        max_share: a group where one tenant has more than this share of the events is
            suppressed too (its statistics would be mostly that tenant's).
        scrub: opt in to error messages: each is passed through this scrubber (see
            :class:`~kairo_guard.detect.pii.check.MessageScrubber`), and a scrubbed message is
            published in its group only if at least ``k`` distinct tenants sent it.
        epsilon: the noise of each group's count and error count (see the module
            docstring); None publishes them exact, which lets ``k - 1`` sybil accounts
            read the remaining tenant's counts exactly.
        rng: the noise's source of randomness (default: the operating system's; a
            seeded one only in tests).
    """

    def __init__(
        self,
        vetting: ShardMinter,
        *,
        audit: AuditAppender,
        pseudonym: Callable[[TenantId], str],
        tenants: Collection[TenantId],
        k: int = DEFAULT_K,
        window_seconds: int = 3600,
        dimensions: Sequence[str] = DEFAULT_DIMENSIONS,
        enumerations: Mapping[str, Iterable[str]] | None = None,
        fields: Mapping[str, str] | None = None,
        max_share: float = 0.5,
        scrub: Callable[[str], str | None] | None = None,
        epsilon: float | None = DEFAULT_EPSILON,
        rng: random.Random | None = None,
    ) -> None:
        if epsilon is not None and not 0 < epsilon <= 100:
            raise ValueError("epsilon must be a number above 0 (at most 100), or None")
        self.epsilon = epsilon
        self._rng = rng if rng is not None else random.SystemRandom()
        if not 0 < max_share < 1:
            raise ValueError("max_share must be between 0 and 1")
        self.max_share = max_share
        self._scrub = scrub
        if k < 2:
            raise ValueError("k must be at least 2: one tenant's statistics are that tenant's")
        if window_seconds < 1:
            raise ValueError("window_seconds must be positive")
        unknown = [d for d in dimensions if d not in ("route", "model", "status", "error_type")]
        if unknown:
            raise ValueError(f"unknown dimensions {unknown}; use route, model, status, error_type")
        self._vetting = vetting
        self._audit = audit
        self._pseudonym = pseudonym
        self._tenants = tenants
        self.k = k
        self.window = window_seconds
        self.dimensions = tuple(dimensions)
        self._enums = {d: frozenset(v) for d, v in (enumerations or {}).items()}
        self._fields = {**DEFAULT_FIELDS, **(fields or {})}

    def aggregate(
        self, events: Iterable[Mapping[str, Any]], report: AggregationReport | None = None
    ) -> list[dict[str, Any]]:
        """Return sealed statistics records for ``events`` (see the module docstring)."""
        report = report if report is not None else AggregationReport()
        parsed: list[_Event] = []
        users: dict[tuple[str, str], set[str]] = {}
        for raw in events:
            report.events += 1
            event = self._parse(raw, report)
            if event is None:
                continue
            parsed.append(event)
            for dim, value in zip(self.dimensions, event.dims, strict=True):
                users.setdefault((dim, value), set()).add(event.tenant)
        groups: dict[tuple[int, tuple[str, ...]], _Group] = {}
        for event in parsed:
            dims = tuple(
                self._publishable(dim, value, users)
                for dim, value in zip(self.dimensions, event.dims, strict=True)
            )
            group = groups.setdefault((event.window, dims), _Group())
            group.tenants.add(event.tenant)
            group.per_tenant[event.tenant] = group.per_tenant.get(event.tenant, 0) + 1
            group.latencies.append((event.latency, event.tenant))
            group.errors += event.error
            if event.message is not None:
                group.messages.setdefault(event.message, set()).add(event.tenant)
        report.used = len(parsed)
        report.groups = len(groups)
        bodies = []
        for (window, dims), group in sorted(groups.items()):
            if len(group.tenants) < self.k or self._dominated(group):
                report.suppressed_groups += 1
                continue
            bodies.append(self._record(window, dims, group))
        # the one code path that mints this class: vetted (strict PII, the net) and
        # signed as one shard by the aggregating role
        out = []
        for body, sealed in zip(bodies, self._vetting.vet(bodies, source=SOURCE), strict=True):
            if isinstance(sealed, str):
                out.append({**body, SEAL_FIELD: sealed})
            else:
                rule = sealed.rule if isinstance(sealed, ContentRefused) else "content.unencodable"
                report.refused[rule] = report.refused.get(rule, 0) + 1
        report.emitted = len(out)
        self._audit.append(
            {
                "event": "telemetry.aggregate",
                "k": self.k,
                "window_s": self.window,
                "events": report.events,
                "used": report.used,
                "groups": report.groups,
                "emitted": report.emitted,
                "suppressed": report.suppressed_groups,
            }
        )
        return out

    def _percentile(self, samples: list[tuple[float, str]], pct: int) -> float | None:
        """Nearest-rank percentile of sorted ``(ms, tenant)`` samples, or None when the
        events at or above it (its tail) come from one tenant, or one tenant has more
        than ``max_share`` of them: then the value is that tenant's own latency."""
        rank = max(1, math.ceil(pct / 100 * len(samples)))
        value = samples[rank - 1][0]
        tail: dict[str, int] = {}
        for _, tenant in samples[bisect.bisect_left(samples, (value, "")) :]:
            tail[tenant] = tail.get(tenant, 0) + 1
        if len(tail) < 2 or max(tail.values()) > self.max_share * sum(tail.values()):
            return None
        return value

    def _dominated(self, group: _Group) -> bool:
        # one tenant with most of a group's events would be most of its statistics
        top = max(group.per_tenant.values())
        return top > self.max_share * len(group.latencies)

    def _publishable(self, dim: str, value: str, users: dict[tuple[str, str], set[str]]) -> str:
        allowed = self._enums.get(dim)
        if allowed is not None:
            return value if value in allowed else OTHER
        if _TOKEN.fullmatch(value) and len(users.get((dim, value), ())) >= self.k:
            return value
        return OTHER

    def _parse(self, raw: Mapping[str, Any], report: AggregationReport) -> _Event | None:
        f = self._fields
        if not isinstance(raw, Mapping):
            report.skip("not-an-object")
            return None
        tenant = raw.get(f["tenant"])
        if not isinstance(tenant, str) or TENANT_PATTERN.fullmatch(tenant) is None:
            report.skip("tenant")
            return None
        if tenant not in self._tenants:  # an invented id must not count towards k
            report.skip("unknown-tenant")
            return None
        value = raw.get(f["latency_ms"])
        latency = (
            float(value)
            if isinstance(value, int | float) and not isinstance(value, bool)
            else math.nan
        )
        if not math.isfinite(latency) or latency < 0:
            report.skip("latency_ms")
            return None
        when = _timestamp(raw.get(f["ts"]))
        if when is None:
            report.skip("ts")
            return None
        dims = []
        for dim in self.dimensions:
            value = raw.get(f[dim])
            if isinstance(value, bool) or not isinstance(value, str | int):
                report.skip(dim)
                return None
            dims.append(str(value))
        status = raw.get(f["status"])
        error_type = raw.get(f["error_type"])
        error = bool(error_type) or (isinstance(status, int) and status >= 500)
        message = None
        if self._scrub is not None:
            raw_message = raw.get(f["error_message"])
            if isinstance(raw_message, str) and raw_message:
                message = self._scrub(raw_message)
                if message is None:
                    report.messages_dropped += 1  # the event is used, its message not
        return _Event(
            tenant=self._pseudonym(tenant),
            window=int(when // self.window) * self.window,
            dims=tuple(dims),
            latency=latency,
            error=error,
            message=message,
        )

    def _record(self, window: int, dims: tuple[str, ...], group: _Group) -> dict[str, Any]:
        latencies = sorted(group.latencies)
        count, errors = len(latencies), group.errors
        if self.epsilon is not None:  # each changes by one with one event: scale 2/epsilon
            count = max(0, count + discrete_laplace(self._rng, 2 / self.epsilon))
            errors = min(count, max(0, errors + discrete_laplace(self._rng, 2 / self.epsilon)))
        p50, p95, p99 = (self._percentile(latencies, pct) for pct in (50, 95, 99))
        body: dict[str, Any] = {
            "window_start": datetime.fromtimestamp(window, UTC).isoformat(),
            "window_s": self.window,
            **dict(zip(self.dimensions, dims, strict=True)),
            "count": count,
            "error_rate": round(errors / count, 6) if count else 0.0,
            "latency_ms_p50": p50,
            "latency_ms_p95": p95,
            "latency_ms_p99": p99,
            "k": self.k,
            "epsilon": self.epsilon,
        }
        if self._scrub is not None:
            shared = sorted(
                ((m, len(t)) for m, t in group.messages.items() if len(t) >= self.k),
                key=lambda mt: (-mt[1], mt[0]),
            )
            body["error_messages"] = [[m, n] for m, n in shared[:10]]
        return body


def discrete_laplace(rng: random.Random, scale: float) -> int:
    """An integer drawn with probability proportional to ``exp(-|x| / scale)``.

    The discrete Laplace (two-sided geometric) mechanism: added to a count that one
    event changes by at most one, it makes the published count ``1 / scale``-
    differentially private for that event. Drawn as the difference of two geometric
    variables: an integer from the start, not a rounded floating-point Laplace sample
    (whose low-order bits can give the true count away).
    """
    q = math.exp(-1 / scale)
    log_q = math.log(q)

    def geometric() -> int:  # P(g) = (1 - q) q^g, by inversion
        return int(math.log(1.0 - rng.random()) / log_q)

    return geometric() - geometric()


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # a time without a zone would be guessed: skip it
    try:
        seconds = moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return seconds if 0 <= seconds < _LAST_TIMESTAMP else None
