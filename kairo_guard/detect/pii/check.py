"""The PII gate at work outside itself: as a content check before shared sinks and
vetting (invariant I3), and as the scrubber of the aggregator's opt-in messages.

The gate is built on first use, not when the Guard starts (loading spaCy takes about a
second, and most commands never need it). If it cannot be built (the ``pii`` extra or
the model is missing) every record that needs it is blocked with rule
``pii.unavailable`` and the reason says what to install: a missing dependency blocks,
it never allows.

A refusal's reason names where PII was found (the JSON path of each string that fired,
see :mod:`kairo_guard.detect.fields`) and which entity types, never the text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from kairo_guard.core.exceptions import ConfigError, ContentRefused
from kairo_guard.core.policy import Decision
from kairo_guard.core.types import Outcome
from kairo_guard.detect.fields import Field, json_path, record_fields
from kairo_guard.detect.fingerprint import FingerprintIndex
from kairo_guard.detect.pii.prefilters import GUARD_ERROR, GUARD_TOO_LONG

PII_RULE = "pii.detected"
PII_UNAVAILABLE_RULE = "pii.unavailable"
PII_UNANALYSED_RULE = "pii.unanalysed"
"""The gate could not read a string in full (over its bounds, or its analysis failed):
blocked, and not reported as if PII had been found."""
_GUARD_FAILURES = frozenset({GUARD_ERROR, GUARD_TOO_LONG})
MAX_PATHS_IN_REASON = 5
"""Fields named in one reason; more are counted, not named."""
MAX_MESSAGE_CHARS = 2_000

Finding = tuple[Field, tuple[str, ...]]
"""A string of a record that holds PII, and the entity types found in it."""


def pii_reason(found: Sequence[Finding]) -> str:
    """The reason of a PII refusal: each field's path and entity types, never its text.

    A key that holds PII is withheld (``*``) from every path, its own and those under
    it, so no path repeats it. That holds for a lowercase key NER tags as a person too:
    ``lang`` may be the model misreading the schema, but ``garcia`` is a name, and no
    rule tells them apart; the path and "(a key)" still say where to look.
    """
    withheld = {str(field.path[-1]) for field, _ in found if field.is_key and field.path}
    parts = [
        f"{', '.join(types)} at {json_path(field.path, withheld)}" + (" (a key)" * field.is_key)
        for field, types in found[:MAX_PATHS_IN_REASON]
    ]
    more = len(found) - MAX_PATHS_IN_REASON
    return "text holds PII: " + "; ".join(parts) + (f"; and {more} more fields" if more > 0 else "")


class LazyPiiCheck:
    """A content check that runs the PII gate on a record's text."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._gate: Any = None
        self._error: str | None = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._gate is None and self._error is None:
                try:
                    self._gate = self._factory()
                except ConfigError as exc:
                    self._error = str(exc)
            return self._gate

    def findings(self, content: object) -> list[Finding] | None:
        """Return each string of the content that holds PII, with the entity types
        found in it ([] if none), in record order; None if the gate is unavailable.

        Each string (key or value) is analysed on its own, in one batch: joined, field
        names and values run together into sequences the NER model misreads as names.
        """
        return self.findings_each([content])[0]

    def findings_each(self, contents: Sequence[object]) -> list[list[Finding] | None]:
        """:meth:`findings` of each record, with one gate batch for all of them."""
        fields = [[f for f in record_fields(c) if f.text.strip()] for c in contents]
        if not any(fields):
            return [[] for _ in contents]
        gate = self._get()
        if gate is None:
            return [None] * len(contents)
        scanned = iter(gate.scan([f.text for each in fields for f in each]))
        return [
            [(f, found.entity_types) for f in each if (found := next(scanned))] for each in fields
        ]

    def entity_types(self, content: object) -> list[str] | None:
        """Return the PII entity types in the content's strings ([] if none); None if
        the gate is unavailable."""
        found = self.findings(content)
        return None if found is None else sorted({t for _, types in found for t in types})

    def entity_types_each(self, texts: list[str]) -> list[list[str]] | None:
        """Per text, the PII entity types found in it ([] if none), analysed as one
        batch; None if the gate is unavailable."""
        gate = self._get()
        if gate is None:
            return None
        return [sorted(finding.entity_types) if finding else [] for finding in gate.scan(texts)]

    def __call__(self, content: object) -> Decision | None:
        return self._decision(self.findings(content))

    def _decision(self, found: list[Finding] | None) -> Decision | None:
        if found is None:
            return Decision(
                Outcome.BLOCK, PII_UNAVAILABLE_RULE, f"the PII gate cannot run: {self._error}"
            )
        if found:
            if all(_GUARD_FAILURES.issuperset(types) for _, types in found):
                reason = pii_reason(found).replace("holds PII", "the PII gate could not read")
                return Decision(Outcome.BLOCK, PII_UNANALYSED_RULE, reason)
            return Decision(Outcome.BLOCK, PII_RULE, pii_reason(found))
        return None

    def refusals(self, contents: Sequence[object]) -> list[ContentRefused | None]:
        """Per record, the refusal for its PII (or for a gate that cannot run), or None;
        the records' strings analysed as one batch (vetting a shard)."""
        decisions = [self._decision(found) for found in self.findings_each(contents)]
        return [None if d is None else ContentRefused(d.rule, d.reason) for d in decisions]


class MessageScrubber:
    """Turns an error message into a publishable one, or None (the aggregator's opt-in
    message path).

    A message is scrubbed with presidio-anonymizer (every PII span found by the gate is
    replaced by ``<ENTITY_TYPE>``), then must pass the PII gate again and overlap no
    tenant's indexed content; anything that cannot be analysed, still holds PII or is a
    tenant's text is dropped. Needs the ``pii`` extra.

    Args:
        gate: the PII gate (:class:`~kairo_guard.detect.pii.gate.PiiGate`).
        fingerprints: the index of every tenant's ingested content.

    Raises:
        ConfigError: presidio-anonymizer is not installed.
    """

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
