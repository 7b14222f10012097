"""``ScrubbingLogExporter``: keeps customer content and PII out of exported logs.

Wrap the exporter a log record processor feeds::

    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(ScrubbingLogExporter(OTLPLogExporter(), guard))
    )

Logs are where content leaks most easily (``log.info("saved %s", document)``, an
exception message quoting a prompt, ``extra={...}``). Before export the body and
every attribute of each record (including ``exception.message`` and
``exception.stacktrace``) are judged as by the span exporter
(:class:`~kairo_guard.otel.scrubbing.ContentScrubber`); the event name, and a severity
text that is not a level name, are judged as names. Content keys, text matching the
fingerprint index and text with PII are masked; when the PII gate cannot run every
text off the safe keys is masked (fail closed). The body is judged under the key
``log.body``, so ``content_keys=[..., "log.body"]`` masks every body; a structured body
is judged entry by entry (``log.body.<key>``), nesting past
:data:`~kairo_guard.otel.scrubbing.MAX_DEPTH` is masked unjudged.

Never raises into the host: an error with a record drops the record (counted
``record-dropped``). The OpenTelemetry Python logs SDK is still under a private module
name (``opentelemetry.sdk._logs``); this module follows its ``LogRecordExporter``
interface of SDK 1.39 and later and is tested against the version pinned for
development.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

try:
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
except ImportError as exc:  # pragma: no cover - the SDK is a development dependency
    raise ImportError(
        "kairo_guard.otel.logs needs the OpenTelemetry SDK 1.39 or later: "
        "pip install 'opentelemetry-sdk>=1.39'"
    ) from exc
from opentelemetry.attributes import BoundedAttributes

from kairo_guard.otel.export import ScrubbingExporterBase

BODY_KEY = "log.body"
"""The key a record's body is judged under."""
_LEVELS = frozenset(
    ["TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "WARNING", "ERROR", "CRITICAL", "FATAL", "NOTSET"]
)
"""Severity texts kept as they are; any other is judged as text."""


class ScrubbingLogExporter(ScrubbingExporterBase[ReadableLogRecord], LogRecordExporter):
    """A log record exporter that scrubs content and PII, then hands records on.

    Args:
        inner: the exporter that sends records (OTLP, console, in-memory).
        guard: whose fingerprint index and PII gate decide what is content.
        content_keys: keys always scrubbed (default :data:`CONTENT_KEYS`).
        safe_keys: keys never scrubbed (default :data:`SAFE_KEYS`).
        remove: drop scrubbed attributes instead of masking their values (a body is
            always masked, never removed).
        telemetry: where the ``kairo_guard.scrubbed`` counter goes (default: the
            guard's meter).

    ``scrubbed`` counts values by reason and whole records dropped
    (``record-dropped``).
    """

    dropped = "record-dropped"

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        """Scrub ``batch`` and export the copies; never raises."""
        result: LogRecordExportResult = self._export_scrubbed(
            batch, self._scrub_record, self._texts, LogRecordExportResult.FAILURE
        )
        return result

    def _texts(self, batch: Sequence[ReadableLogRecord]) -> Iterator[str]:
        for record in batch:
            log = record.log_record
            yield from self.scrubber.texts(log.attributes)
            yield from self.scrubber.texts({BODY_KEY: log.body})
            if getattr(log, "event_name", None):
                yield str(log.event_name)

    def _scrub_record(self, record: ReadableLogRecord) -> ReadableLogRecord:
        original = record.log_record
        log = copy.copy(original)  # the processor's record is shared: never edit it
        dropped = record.dropped_attributes
        attributes: Any = self.scrubber.attributes(original.attributes)
        if dropped:  # keep the count of attributes the SDK's limits dropped
            attributes = BoundedAttributes(attributes=attributes, immutable=False)
            attributes.dropped = dropped
        log.attributes = attributes
        if original.body is not None:
            log.body = self.scrubber.value(BODY_KEY, original.body)
        if getattr(original, "event_name", None):
            log.event_name = self.scrubber.name(str(original.event_name))
        severity = original.severity_text
        if severity and str(severity).upper() not in _LEVELS:
            log.severity_text = self.scrubber.name(str(severity))
        if getattr(log, "exception", None) is not None:
            log.exception = None  # already rendered into (scrubbed) attributes
        return dataclasses.replace(record, log_record=log)
