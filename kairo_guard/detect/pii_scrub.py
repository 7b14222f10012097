"""Scrubbing free text for the telemetry aggregator's opt-in message path.

A message is scrubbed with presidio-anonymizer (every PII span found by the gate is
replaced by ``<ENTITY_TYPE>``), then must pass the PII gate again and overlap no
tenant's indexed content; anything that cannot be analysed, still holds PII or is a
tenant's text is dropped (None). Needs the ``pii`` extra.
"""

from __future__ import annotations

from typing import Any

from kairo_guard.core.exceptions import ConfigError
from kairo_guard.detect.fingerprint import FingerprintIndex

MAX_MESSAGE_CHARS = 2_000


class MessageScrubber:
    """Turns an error message into a publishable one, or None."""

    def __init__(self, gate: Any, fingerprints: FingerprintIndex) -> None:
        try:
            from presidio_anonymizer import AnonymizerEngine
        except ImportError as exc:
            raise ConfigError(
                "scrubbing messages needs presidio-anonymizer: pip install 'kairo-guard[pii]'"
            ) from exc
        self._gate = gate
        self._fingerprints = fingerprints
        self._anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]

    def __call__(self, message: str) -> str | None:
        """Return the scrubbed message, or None if it must not be published."""
        if not isinstance(message, str) or not message.strip():
            return None
        if len(message) > MAX_MESSAGE_CHARS:
            return None
        spans = self._gate.spans(message)
        if spans is None:
            return None
        try:
            scrubbed: str = self._anonymizer.anonymize(text=message, analyzer_results=spans).text
        except Exception:  # noqa: BLE001 - fail closed: an unscrubbable message is dropped
            return None
        if self._gate.check(scrubbed) or self._fingerprints.overlap(scrubbed) is not None:
            return None
        return " ".join(scrubbed.split())
