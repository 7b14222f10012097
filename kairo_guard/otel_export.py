"""``ScrubbingSpanExporter``: keeps customer content and PII out of exported traces.

Wrap the exporter a span processor feeds::

    provider.add_span_processor(
        BatchSpanProcessor(ScrubbingSpanExporter(OTLPSpanExporter(), guard))
    )

Before export every span attribute, event attribute and link attribute, and the status
description, is looked at; a value is masked (``[scrubbed:<reason>]``) when

* its key is a content key (:data:`CONTENT_KEYS`: request bodies, database statements,
  GenAI prompts and completions, or any key given), whatever the value;
* it is text whose fingerprints match a tenant's ingested content (the guard's index);
* it is text in which the PII gate finds PII.

If the guard runs the PII gate and the gate cannot run, every string attribute not
under a known-safe key (:data:`SAFE_KEYS`, ``kairo_guard.*``) is masked: fail closed.
Numbers and booleans pass. Resource attributes and span names are left as they are.

Telemetry never breaks the host: an error while scrubbing a value masks it, an error
with a whole span drops that span, and nothing is raised into the span processor;
everything scrubbed is counted in ``scrubbed`` and the ``kairo_guard.scrubbed``
counter. This module needs the OpenTelemetry SDK (``opentelemetry-sdk``); the core of
kairo-guard does not import it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
except ImportError as exc:  # pragma: no cover - the SDK is a development dependency
    raise ImportError(
        "kairo_guard.otel_export needs the OpenTelemetry SDK: pip install opentelemetry-sdk"
    ) from exc
from opentelemetry.trace import Link, Status

from kairo_guard.otel import ATTR_REASON, METRIC_SCRUBBED, GuardTelemetry

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

CONTENT_KEYS = (
    "http.request.body",
    "http.response.body",
    "db.statement",
    "db.query.text",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
)
"""Keys whose values are content by definition; a key also covers ``key.*``."""
SAFE_KEYS = frozenset(
    {
        "http.route",
        "http.request.method",
        "http.response.status_code",
        "http.method",
        "http.status_code",
        "url.scheme",
        "server.port",
        "network.protocol.version",
        "rpc.system",
        "rpc.service",
        "rpc.method",
        "error.type",
        "exception.type",
        "gen_ai.system",
        "gen_ai.operation.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
    }
)
"""Keys never scrubbed: protocol vocabulary, not content. ``kairo_guard.*`` too."""
SAFE_PREFIX = "kairo_guard."
MASK = "[scrubbed:{reason}]"
_STATUS_KEY = "otel.status_description"
_CACHE_SIZE = 4096
CLEAN_VERDICT_SECONDS = 10.0
"""How long a text judged clean stays judged: content indexed later (a tenant's upload
of that very text) must be caught within this time."""
logger = logging.getLogger("kairo_guard.otel_export")


class ScrubbingSpanExporter(SpanExporter):
    """A span exporter that scrubs content and PII, then hands spans to ``inner``.

    Args:
        inner: the exporter that sends spans (OTLP, console, in-memory).
        guard: whose fingerprint index and PII gate decide what is content.
        content_keys: keys always scrubbed (default :data:`CONTENT_KEYS`).
        safe_keys: keys never scrubbed (default :data:`SAFE_KEYS`).
        remove: drop scrubbed attributes instead of masking their values.
        telemetry: where the ``kairo_guard.scrubbed`` counter goes (default: the
            guard's meter).
    """

    def __init__(
        self,
        inner: SpanExporter,
        guard: Guard,
        *,
        content_keys: Iterable[str] = CONTENT_KEYS,
        safe_keys: Iterable[str] = SAFE_KEYS,
        remove: bool = False,
        telemetry: GuardTelemetry | None = None,
    ) -> None:
        self._inner = inner
        self._guard = guard
        self._content_keys = tuple(content_keys)
        self._safe_keys = frozenset(safe_keys)
        self._remove = remove
        self._telemetry = telemetry or guard.telemetry
        self._verdicts: dict[str, tuple[str | None, float]] = {}
        self._clock = time.monotonic
        self._lock = threading.Lock()
        self.scrubbed: Counter[str] = Counter()
        """Values scrubbed so far, by reason (``key``, ``fingerprint``, ``pii``,
        ``pii-unavailable``, ``error``; ``span-dropped`` counts whole spans)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Scrub ``spans`` and export the copies; never raises."""
        try:
            clean: list[ReadableSpan] = []
            for span in spans:
                try:
                    clean.append(self._scrub_span(span))
                except Exception:  # noqa: BLE001 - drop the span, never leak it
                    self._count("span-dropped")
            return self._inner.export(clean)
        except Exception:  # telemetry never breaks the host
            logger.exception("scrubbing span export failed")
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        try:
            self._inner.shutdown()
        except Exception:  # telemetry never breaks the host
            logger.exception("inner exporter shutdown failed")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the inner exporter."""
        try:
            return bool(self._inner.force_flush(timeout_millis))
        except Exception:  # telemetry never breaks the host
            logger.exception("inner exporter flush failed")
            return False

    # -- scrubbing -------------------------------------------------------------------

    def _scrub_span(self, span: ReadableSpan) -> ReadableSpan:
        attributes = self._scrub(span.attributes)
        events = [Event(e.name, self._scrub(e.attributes), e.timestamp) for e in span.events]
        links = [Link(link.context, self._scrub(link.attributes)) for link in span.links]
        status = span.status
        if status.description:
            scrubbed = self._scrub({_STATUS_KEY: status.description})
            status = Status(status.status_code, scrubbed.get(_STATUS_KEY))
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=events,
            links=links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _scrub(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (attributes or {}).items():
            try:
                reason = self._reason(key, value)
            except Exception:  # noqa: BLE001 - an unjudged value is not exported
                reason = "error"
            if reason is None:
                out[key] = value
                continue
            self._count(reason)
            if not self._remove:
                out[key] = MASK.format(reason=reason)
        return out

    def _reason(self, key: str, value: object) -> str | None:
        """Why ``value`` under ``key`` must be scrubbed, or None to keep it."""
        if any(key == k or key.startswith(k + ".") for k in self._content_keys):
            return "key"
        if key in self._safe_keys or key.startswith(SAFE_PREFIX):
            return None
        if isinstance(value, str):
            return self._text_reason(value)
        if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
            for item in value:
                if isinstance(item, str) and (reason := self._text_reason(item)) is not None:
                    return reason
        return None

    def _text_reason(self, text: str) -> str | None:
        if not text.strip():
            return None
        now = self._clock()
        cached = self._verdicts.get(text)
        if cached is not None and (cached[0] is not None or now < cached[1]):
            return cached[0]
        reason: str | None = None
        if self._guard.fingerprints.overlap(text) is not None:
            reason = "fingerprint"
        elif self._guard.pii is not None:
            found = self._guard.pii.entity_types(text)
            if found is None:
                reason = "pii-unavailable"
            elif found:
                reason = "pii"
        if len(self._verdicts) >= _CACHE_SIZE:
            self._verdicts.clear()
        self._verdicts[text] = (reason, now + CLEAN_VERDICT_SECONDS)
        return reason

    def _count(self, reason: str) -> None:
        with self._lock:
            self.scrubbed[reason] += 1
        self._telemetry.add(METRIC_SCRUBBED, 1, {ATTR_REASON: reason})
