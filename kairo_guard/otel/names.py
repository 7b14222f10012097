"""The names the guard's telemetry uses: spans, span events, attributes and metrics.

One vocabulary, imported wherever telemetry is made or read (the instrumentation, the
middleware's request span, baggage, the scrubbers, and tests and dashboards). Every
attribute under ``kairo_guard.*`` holds counts, rules, digests or pseudonyms, never
content.
"""

from __future__ import annotations

INSTRUMENTATION_NAME = "kairo_guard"
CHECK_SPAN = "kairo_guard.check"
"""Name of the span of one check."""
REQUEST_SPAN = "kairo_guard.request"
"""Name of the middleware's own span, made only when no server span is recording."""
BLOCKED_EVENT = "kairo_guard.blocked"
"""Span event per refused record (up to
:data:`~kairo_guard.otel.instrumentation.MAX_BLOCKED_EVENTS`)."""
BLOCKED_MORE_EVENT = "kairo_guard.blocked.more"
"""One span event counting the refused records past the cap."""

ATTR_CHECK_ID = "kairo_guard.check.id"
ATTR_SINK = "kairo_guard.sink.name"
ATTR_SINK_KIND = "kairo_guard.sink.kind"
ATTR_SINK_TENANT = "kairo_guard.sink.tenant"
ATTR_MODE = "kairo_guard.mode"
ATTR_DECISION = "kairo_guard.decision"
ATTR_RULE = "kairo_guard.rule"
ATTR_RULES = "kairo_guard.rules"
ATTR_TOTAL = "kairo_guard.records.total"
ATTR_ALLOWED = "kairo_guard.records.allowed"
ATTR_BLOCKED = "kairo_guard.records.blocked"
ATTR_TENANT = "kairo_guard.tenant"
"""Pseudonym (``tp_...``) of the tenant served; never the raw id."""
ATTR_ABANDONED = "kairo_guard.check.abandoned"
ATTR_INDEX = "kairo_guard.record.index"
ATTR_DIGEST = "kairo_guard.record.digest_prefix"
ATTR_COUNT = "kairo_guard.count"
ATTR_STATUS = "kairo_guard.request.status"
ATTR_REASON = "kairo_guard.reason"
ATTR_BYTES = "kairo_guard.request.bytes"
ATTR_BAGGAGE = "kairo_guard.baggage"
"""Outcome of inbound kairo baggage: ``accepted`` or why it was ignored."""

METRIC_DECISIONS = "kairo_guard.decisions"
METRIC_DURATION = "kairo_guard.check.duration"
METRIC_RECORDS = "kairo_guard.records.scanned"
METRIC_BYTES = "kairo_guard.bytes.scanned"
METRIC_REQUESTS = "kairo_guard.requests"
METRIC_BAGGAGE = "kairo_guard.baggage.rejected"
METRIC_SCRUBBED = "kairo_guard.scrubbed"
METRIC_AUDIT_ENTRIES = "kairo_guard.audit.anchored_entries"
"""Gauge: entries of the audit log its newest signed head vouches for (the anchor)."""
METRIC_AUDIT_HASH = "kairo_guard.audit.anchored_hash"
"""Gauge: the first 52 bits of that head's last entry hash, as an integer."""
METRIC_ANCHOR_FAILURES = "kairo_guard.audit.anchor_failures"
"""Counter: signed heads the store could not record as the anchor (it was unreachable)."""
ATTR_AUDIT_LOG = "kairo_guard.audit.log"
"""Which audit log an anchor gauge is for."""
ATTR_SOURCE = "kairo_guard.source"
"""What a byte count measured (``request`` bodies, raw input)."""
