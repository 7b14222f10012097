"""OpenTelemetry traces and metrics of guard decisions (API only; no-op without an SDK).

One span per check (``kairo_guard.check``), never one per record: it starts under the
caller's current span when the check starts and ends when the check finishes, without
becoming the current span around user code. Everything it carries is computed at the
end from the counts the check keeps anyway, so a scan pays nothing per record.

The tracer and meter are obtained on first use from the providers given, else the
global ones, so an SDK configured after import is honoured. Tenant ids appear only as
their keyed pseudonyms; content never appears.
"""

from __future__ import annotations

import collections
import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any

from opentelemetry import metrics, trace

from kairo_guard.core.report import CheckReport, Violation
from kairo_guard.core.types import Mode
from kairo_guard.otel import names

MAX_BLOCKED_EVENTS = 32
DIGEST_PREFIX = 16
_COUNTERS = {
    names.METRIC_DECISIONS: ("{record}", "Records decided, by sink, decision and rule"),
    names.METRIC_RECORDS: ("{record}", "Records scanned by guard checks"),
    names.METRIC_BYTES: ("By", "Bytes of content scanned (request bodies, raw input)"),
    names.METRIC_REQUESTS: ("{request}", "Requests decided by the middleware"),
    names.METRIC_BAGGAGE: ("{token}", "Inbound kairo baggage ignored, by reason"),
    names.METRIC_SCRUBBED: ("{attribute}", "Span attributes scrubbed before export"),
    names.METRIC_ANCHOR_FAILURES: ("{head}", "Audit heads the store could not anchor"),
}

_ANCHOR_GAUGES = {
    names.METRIC_AUDIT_ENTRIES: "Entries the audit log's newest signed head vouches for",
    names.METRIC_AUDIT_HASH: "First 52 bits of that head's last entry hash, as an integer",
}
_MISSING = object()
_REQUEST_BYTES_KEY = ((names.ATTR_SOURCE, "request"),)
_FOLD_AT = 1024
"""Requests queued for counting before they are folded into the tallies."""

ALLOW, BLOCK = "allow", "block"
_HEADER_ATTRIBUTES = (
    ("check", names.ATTR_CHECK_ID),
    ("sink", names.ATTR_SINK),
    ("kind", names.ATTR_SINK_KIND),
    ("sink_tenant", names.ATTR_SINK_TENANT),
    ("mode", names.ATTR_MODE),
)


def _version() -> str:
    try:
        return metadata.version("kairo-guard")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0"


class GuardTelemetry:
    """The guard's tracer and instruments, built on first use.

    Args:
        tracer_provider: an SDK ``TracerProvider`` (default: the global one, looked up
            on first use).
        meter_provider: an SDK ``MeterProvider`` (default: the global one).
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer: trace.Tracer | None = None
        self._active: trace.Tracer | None = None
        self._settled = False
        self._looked_up = False
        self._instruments: dict[str, Any] | None = None
        self._tallies: dict[str, dict[tuple[tuple[str, Any], ...], int | float]] = {
            name: {} for name in _COUNTERS
        }
        self._lock = threading.Lock()
        self._requests: collections.deque[tuple[str, int, int | None]] = collections.deque()
        self._allow_rules: tuple[object, frozenset[str]] = (None, frozenset())
        self._anchors: dict[str, tuple[int, int]] = {}  # log id -> (entries, hash bits)

    @property
    def tracer(self) -> trace.Tracer:
        """The ``kairo_guard`` tracer (a proxy until a global SDK is set)."""
        if self._tracer is None:
            self._tracer = trace.get_tracer(
                names.INSTRUMENTATION_NAME, _version(), tracer_provider=self._tracer_provider
            )
        return self._tracer

    def active_tracer(self) -> trace.Tracer | None:
        """The tracer if spans are recorded at all, else None (cheap, for every request).

        None while no SDK is configured: no provider was given and the global one is
        not set yet, which is looked at again on every call so that an SDK set later is
        honoured; also None for a provider that makes only no-op tracers
        (``NoOpTracerProvider``, a disabled SDK), which is how tracing is turned off for
        the guard alone. Once a real provider is known the answer never changes (the
        global provider can be set only once).
        """
        if self._settled:
            return self._active
        provider = self._tracer_provider
        if provider is None or isinstance(provider, trace.ProxyTracerProvider):
            provider = self._global_tracer_provider()
            if provider is None:
                return None
        tracer = provider.get_tracer(names.INSTRUMENTATION_NAME, _version())
        self._active = None if isinstance(tracer, trace.NoOpTracer) else tracer
        self._settled = True
        return self._active

    def _global_tracer_provider(self) -> Any:
        # trace.get_tracer_provider() looks up an environment variable on every call
        # (microseconds per request while no SDK is set): it is asked once, which also
        # loads a provider named by OTEL_PYTHON_TRACER_PROVIDER, and then the API's
        # module global is read, as the API's own ProxyTracer does.
        if self._looked_up:
            provider = getattr(trace, "_TRACER_PROVIDER", _MISSING)
            if provider is None:
                return None
            if provider is not _MISSING:
                return provider
        self._looked_up = True
        provider = trace.get_tracer_provider()
        return None if isinstance(provider, trace.ProxyTracerProvider) else provider

    def _ensure_instruments(self) -> dict[str, Any]:
        if self._instruments is None:
            meter = metrics.get_meter(
                names.INSTRUMENTATION_NAME, _version(), meter_provider=self._meter_provider
            )
            for name, (unit, description) in _COUNTERS.items():
                meter.create_observable_counter(
                    name, [functools.partial(self._observe, name)], unit, description
                )
            for name, description in _ANCHOR_GAUGES.items():
                meter.create_observable_gauge(
                    name, [functools.partial(self._observe_anchor, name)], "1", description
                )
            self._instruments = {
                names.METRIC_DURATION: meter.create_histogram(
                    names.METRIC_DURATION, "s", "Duration of one guard check"
                )
            }
        return self._instruments

    def _observe(self, name: str, options: metrics.CallbackOptions) -> list[metrics.Observation]:
        if name in (names.METRIC_REQUESTS, names.METRIC_BYTES):
            self._fold_requests()
        with self._lock:
            items = list(self._tallies[name].items())
        return [metrics.Observation(value, dict(key)) for key, value in items]

    def anchored(self, log_id: str, count: int, last_hash: str) -> None:
        """Report an audit log's newest signed head (gauges an off-machine metrics
        backend keeps: a log rolled back shows as a count that went down)."""
        self._ensure_instruments()
        with self._lock:
            self._anchors[log_id] = (count, int(last_hash[:13], 16))

    def anchor_failed(self, log_id: str) -> None:
        """Count a head of ``log_id`` the store could not record (a later head records
        again; an alert on this counter tells that the anchor lags the log)."""
        self.add(names.METRIC_ANCHOR_FAILURES, 1, {names.ATTR_AUDIT_LOG: log_id})

    def _observe_anchor(
        self, name: str, options: metrics.CallbackOptions
    ) -> list[metrics.Observation]:
        which = 0 if name == names.METRIC_AUDIT_ENTRIES else 1
        with self._lock:
            items = list(self._anchors.items())
        return [metrics.Observation(v[which], {names.ATTR_AUDIT_LOG: k}) for k, v in items]

    def add(self, name: str, amount: int | float, attributes: Mapping[str, Any]) -> None:
        """Add to a counter, or record in the duration histogram; never raises.

        Counters are tallied here (a dict update, cheap enough for every request) and
        reported when the SDK's reader collects; only the histogram is recorded
        through the SDK at once.
        """
        try:
            instruments = self._instruments or self._ensure_instruments()
            if name == names.METRIC_DURATION:
                instruments[name].record(amount, attributes)
                return
            key = tuple(attributes.items())
            tally = self._tallies[name]
            with self._lock:
                tally[key] = tally.get(key, 0) + amount
        except Exception:  # noqa: BLE001, S110 - telemetry never breaks the host
            pass

    def count_request(self, decision: str, status: int, size: int | None) -> None:
        """Count one request decided by the middleware (and its body bytes); never
        raises. The per-request form of :meth:`add`: one append to a queue (atomic, no
        lock), folded into the tallies when the reader collects or the queue is long."""
        try:
            if self._instruments is None:
                self._ensure_instruments()
            self._requests.append((decision, status, size))
            if len(self._requests) >= _FOLD_AT:
                self._fold_requests()
        except Exception:  # noqa: BLE001, S110 - telemetry never breaks the host
            pass

    def request_queue(
        self,
    ) -> tuple[collections.deque[tuple[str, int, int | None]], Callable[[], None], int]:
        """What :meth:`count_request` does, for a caller in C that counts on its own: the
        queue it appends ``(decision, status, size)`` to, the fold to call once the queue
        holds the length given third, and that length. Count one request through
        :meth:`count_request` first: it makes the instruments."""
        return self._requests, self._fold_requests, _FOLD_AT

    def _fold_requests(self) -> None:
        requests = self._tallies[names.METRIC_REQUESTS]
        scanned = self._tallies[names.METRIC_BYTES]
        pop = self._requests.popleft
        with self._lock:
            while self._requests:
                decision, status, size = pop()
                key = ((names.ATTR_DECISION, decision), (names.ATTR_STATUS, status))
                requests[key] = requests.get(key, 0) + 1
                if size:
                    scanned[_REQUEST_BYTES_KEY] = scanned.get(_REQUEST_BYTES_KEY, 0) + size

    # -- checks ----------------------------------------------------------------------

    def start_check(
        self, owner: object, header: Mapping[str, Any], tenant: str | None
    ) -> tuple[trace.Span, weakref.finalize[Any, Any] | None]:
        """Start the span of a check under the current context (not made current).

        ``header`` is the check's audit header (check, sink, kind, sink_tenant, mode),
        ``tenant`` the served tenant's pseudonym. A finalizer ends the span if ``owner``
        is dropped unfinished (a lazily consumed generator that was never read), so no
        span is left open.
        """
        try:
            tracer = self.active_tracer()
            if tracer is None:
                return trace.INVALID_SPAN, None
            attributes = {attr: header[key] for key, attr in _HEADER_ATTRIBUTES if header.get(key)}
            if tenant:
                attributes[names.ATTR_TENANT] = tenant
            span = tracer.start_span(names.CHECK_SPAN, attributes=attributes)
        except Exception:  # noqa: BLE001 - telemetry never breaks the host
            return trace.INVALID_SPAN, None
        if not span.is_recording():
            return span, None
        return span, weakref.finalize(owner, _abandon, span)

    def finish_check(
        self,
        span: trace.Span,
        report: CheckReport,
        *,
        sink: str,
        policy: Any,
        bytes_scanned: int = 0,
    ) -> None:
        """End the check's span and record its metrics from the finished report.

        ``sink`` is the sink's audit name (tenant pseudonymized); ``policy`` the
        :class:`~kairo_guard.core.policy.Policy` that decided, which says which rules allow.
        """
        try:
            if self._allow_rules[0] is not policy:
                allows = frozenset(r.id for r in policy.rules if r.effect == ALLOW)
                self._allow_rules = (policy, allows)
            self._finish_check(span, report, sink, self._allow_rules[1], bytes_scanned)
        except Exception:  # noqa: BLE001, S110 - telemetry never breaks the host
            pass

    def _finish_check(
        self,
        span: trace.Span,
        report: CheckReport,
        sink: str,
        allow_rules: frozenset[str],
        bytes_scanned: int,
    ) -> None:
        decision = ALLOW if report.blocked == 0 else BLOCK
        if span.is_recording():
            span.set_attributes(
                {
                    names.ATTR_DECISION: decision,
                    names.ATTR_RULES: sorted(report.by_rule),
                    names.ATTR_TOTAL: report.total,
                    names.ATTR_ALLOWED: report.allowed,
                    names.ATTR_BLOCKED: report.blocked,
                }
            )
            _blocked_events(span, report.violations, report.blocked)
            if report.blocked and report.mode is Mode.ENFORCE:
                span.set_status(trace.StatusCode.ERROR, "IsolationViolation")
            span.end()
        base = {names.ATTR_SINK: sink, names.ATTR_SINK_KIND: report.kind.split(":", 1)[0]}
        for rule, count in report.by_rule.items():
            outcome = ALLOW if rule in allow_rules else BLOCK
            self.add(
                names.METRIC_DECISIONS,
                count,
                {**base, names.ATTR_DECISION: outcome, names.ATTR_RULE: rule},
            )
        self.add(names.METRIC_DURATION, report.duration_s, {**base, names.ATTR_DECISION: decision})
        self.add(names.METRIC_RECORDS, report.total, base)
        if bytes_scanned:
            self.add(names.METRIC_BYTES, bytes_scanned, base)


def _blocked_events(span: trace.Span, violations: Iterable[Violation], blocked: int) -> None:
    shown = 0
    for violation in violations:
        if shown == MAX_BLOCKED_EVENTS:
            break
        attributes: dict[str, Any] = {
            names.ATTR_INDEX: violation.index,
            names.ATTR_RULE: violation.rule,
        }
        if violation.digest:
            attributes[names.ATTR_DIGEST] = violation.digest[:DIGEST_PREFIX]
        span.add_event(names.BLOCKED_EVENT, attributes)
        shown += 1
    if blocked > shown:
        span.add_event(names.BLOCKED_MORE_EVENT, {names.ATTR_COUNT: blocked - shown})


def _abandon(span: trace.Span) -> None:
    try:
        span.set_attribute(names.ATTR_ABANDONED, True)
        span.end()
    except Exception:  # noqa: BLE001, S110 - runs from the garbage collector
        pass
