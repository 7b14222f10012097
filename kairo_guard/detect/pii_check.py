"""The PII gate as a content check before shared sinks (invariant I3).

The gate is built on first use, not when the Guard starts (loading spaCy takes about a
second, and most commands never need it). If it cannot be built (the ``pii`` extra or
the model is missing) every record that needs it is blocked with rule
``pii.unavailable`` and the reason says what to install: a missing dependency blocks,
it never allows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kairo_guard.core.exceptions import ConfigError, ContentRefused
from kairo_guard.core.policy import Decision
from kairo_guard.core.types import Outcome
from kairo_guard.detect.fingerprint import record_strings

PII_RULE = "pii.detected"
PII_UNAVAILABLE_RULE = "pii.unavailable"


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

    def entity_types(self, content: object) -> list[str] | None:
        """Return the PII entity types in the content's strings ([] if none); None if
        the gate is unavailable.

        Each string (key or value) is analysed on its own, in one batch: joined, field
        names and values run together into sequences the NER model misreads as names.
        """
        texts = [s for s in record_strings(content) if s.strip()]
        if not texts:
            return []
        gate = self._get()
        if gate is None:
            return None
        return sorted({t for finding in gate.scan(texts) if finding for t in finding.entity_types})

    def entity_types_each(self, texts: list[str]) -> list[list[str]] | None:
        """Per text, the PII entity types found in it ([] if none), analysed as one
        batch; None if the gate is unavailable."""
        gate = self._get()
        if gate is None:
            return None
        return [sorted(finding.entity_types) if finding else [] for finding in gate.scan(texts)]

    def __call__(self, content: object) -> Decision | None:
        found = self.entity_types(content)
        if found is None:
            return Decision(
                Outcome.BLOCK, PII_UNAVAILABLE_RULE, f"the PII gate cannot run: {self._error}"
            )
        if found:
            return Decision(Outcome.BLOCK, PII_RULE, f"text holds PII: {', '.join(sorted(found))}")
        return None

    def refuse_if_pii(self, content: object) -> None:
        """Raise ContentRefused if the content holds PII or the gate cannot run."""
        decision = self(content)
        if decision is not None:
            raise ContentRefused(decision.rule, decision.reason)
