"""``ScrubbingSpanExporter``: keeps customer content and PII out of exported traces.

Wrap the exporter a span processor feeds::

    provider.add_span_processor(
        BatchSpanProcessor(ScrubbingSpanExporter(OTLPSpanExporter(), guard))
    )

Before export every span attribute, event attribute and link attribute, and the status
description, is judged by a :class:`~kairo_guard.otel.scrubbing.ContentScrubber`: content
keys, text matching the fingerprint index and text with PII are masked
(``[scrubbed:<reason>]``); if the PII gate cannot run, every text off the safe keys is
masked (fail closed). Span and event names are judged as text too (a name with a
customer's words or PII in it becomes ``[scrubbed:<reason>]``; the guard's own names and
``exception`` are kept). Resource attributes are left as they are.

Telemetry never breaks the host: an error while scrubbing a value masks it, an error
with a whole span drops that span, and nothing is raised into the span processor;
everything scrubbed is counted in ``scrubbed`` and the ``kairo_guard.scrubbed``
counter. This module needs the OpenTelemetry SDK (``opentelemetry-sdk``); the core of
kairo-guard does not import it. Logs: :mod:`kairo_guard.otel.logs`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

try:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
except ImportError as exc:  # pragma: no cover - the SDK is a development dependency
    raise ImportError(
        "kairo_guard.otel.export needs the OpenTelemetry SDK: pip install opentelemetry-sdk"
    ) from exc
from opentelemetry.trace import Link, SpanContext, Status, TraceState

from kairo_guard.otel.instrumentation import GuardTelemetry
from kairo_guard.otel.protocols import ContentJudges
from kairo_guard.otel.scrubbing import CONTENT_KEYS, SAFE_KEYS, ContentScrubber
from kairo_guard.otel.verdicts import CLEAN_VERDICT_SECONDS

_STATUS_KEY = "otel.status_description"
__all__ = [
    "CLEAN_VERDICT_SECONDS",
    "CONTENT_KEYS",
    "SAFE_KEYS",
    "ScrubbingExporterBase",
    "ScrubbingSpanExporter",
]
_Item = TypeVar("_Item")
logger = logging.getLogger("kairo_guard.otel.export")


class ScrubbingExporterBase(Generic[_Item]):
    """What the span and log exporters share: the inner exporter, the scrubber, and
    the rule that telemetry never raises into the host (an item that cannot be
    scrubbed is dropped and counted under ``dropped``).

    Args:
        inner: the exporter that sends the scrubbed copies.
        guard, content_keys, safe_keys, remove, telemetry: as for
            :class:`ContentScrubber`.
    """

    dropped = "dropped"
    """The reason counted for an item that could not be scrubbed."""

    def __init__(
        self,
        inner: Any,
        guard: ContentJudges,
        *,
        content_keys: Iterable[str] = CONTENT_KEYS,
        safe_keys: Iterable[str] = SAFE_KEYS,
        remove: bool = False,
        telemetry: GuardTelemetry | None = None,
    ) -> None:
        self._inner = inner
        self.scrubber = ContentScrubber(
            guard,
            content_keys=content_keys,
            safe_keys=safe_keys,
            remove=remove,
            telemetry=telemetry,
        )
        """What judges the values (its ``clock`` can be replaced in tests)."""

    @property
    def scrubbed(self) -> Counter[str]:
        """Values scrubbed so far, by reason; :attr:`dropped` counts whole items."""
        return self.scrubber.scrubbed

    def _export_scrubbed(
        self,
        items: Sequence[_Item],
        scrub: Callable[[_Item], _Item],
        texts: Callable[[Sequence[_Item]], Iterable[str]],
        failure: Any,
    ) -> Any:
        """Export scrubbed copies of ``items`` with the inner exporter; ``failure``
        (its result on an error) rather than raising. ``texts`` lists the texts of the
        batch, judged together first."""
        try:
            self.scrubber.prejudge(texts(items))
        except Exception:  # only a speed-up: each value is judged anyway
            logger.debug("judging the batch together failed", exc_info=True)
        try:
            clean: list[_Item] = []
            for item in items:
                try:
                    clean.append(scrub(item))
                except Exception:  # noqa: BLE001 - drop the item, never leak it
                    self.scrubber.count(self.dropped)
            return self._inner.export(clean)
        except Exception:  # telemetry never breaks the host
            logger.exception("scrubbing export failed")
            return failure

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


class ScrubbingSpanExporter(ScrubbingExporterBase[ReadableSpan], SpanExporter):
    """A span exporter that scrubs content and PII, then hands spans to ``inner``.

    Args:
        inner: the exporter that sends spans (OTLP, console, in-memory).
        guard: whose fingerprint index and PII gate decide what is content.
        content_keys: keys always scrubbed (default :data:`CONTENT_KEYS`).
        safe_keys: keys never scrubbed (default :data:`SAFE_KEYS`).
        remove: drop scrubbed attributes instead of masking their values.
        telemetry: where the ``kairo_guard.scrubbed`` counter goes (default: the
            guard's meter).

    ``scrubbed`` counts values by reason (``key``, ``fingerprint``, ``pii``,
    ``pii-unavailable``, ``error``) and whole spans dropped (``span-dropped``).
    """

    dropped = "span-dropped"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Scrub ``spans`` and export the copies; never raises."""
        result: SpanExportResult = self._export_scrubbed(
            spans, self._scrub_span, self._texts, SpanExportResult.FAILURE
        )
        return result

    def _texts(self, spans: Sequence[ReadableSpan]) -> Iterator[str]:
        texts = self.scrubber.texts
        for span in spans:
            yield span.name
            yield from texts(span.attributes)
            for event in span.events:
                yield event.name
                yield from texts(event.attributes)
            for link in span.links:
                yield from texts(link.attributes)
                yield from _trace_state_values(link.context)
            if span.status.description:
                yield span.status.description
            yield from _trace_state_values(span.context)

    def _scrub_span(self, span: ReadableSpan) -> ReadableSpan:
        scrub = self.scrubber.attributes
        name = self.scrubber.name
        events = [Event(name(e.name), scrub(e.attributes), e.timestamp) for e in span.events]
        links = [Link(self._context(link.context), scrub(link.attributes)) for link in span.links]
        status = span.status
        if status.description:
            scrubbed = scrub({_STATUS_KEY: status.description})
            status = Status(status.status_code, scrubbed.get(_STATUS_KEY))
        return ReadableSpan(
            name=name(span.name),
            context=None if span.context is None else self._context(span.context),
            parent=span.parent,
            resource=span.resource,
            attributes=scrub(span.attributes),
            events=events,
            links=links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _context(self, context: SpanContext) -> SpanContext:
        """``context`` without its ``tracestate`` when a value in it carries content (it
        comes from the caller's header, and is exported with every span of the trace)."""
        for value in _trace_state_values(context):
            reason = self.scrubber.judge(value)
            if reason is not None:
                self.scrubber.count(reason)
                return SpanContext(
                    context.trace_id, context.span_id, context.is_remote,
                    context.trace_flags, TraceState(),
                )  # fmt: skip
        return context


def _trace_state_values(context: SpanContext | None) -> Iterator[str]:
    if context is not None and context.trace_state:
        yield from context.trace_state.values()
