"""Verdicts on telemetry texts: is this text a tenant's content, or does it hold PII?

A text is judged by the fingerprint index, then (if the guard runs it) by the PII gate;
the PII gate judges a batch of texts several times faster than the same texts one by
one, so an exporter judges its whole batch first (:meth:`TextVerdicts.prejudge`). Each
verdict is cached: a finding for good, a clean verdict for
:data:`CLEAN_VERDICT_SECONDS`, since content indexed later (a tenant's upload of that
very text) must be caught in time. Long texts are cached under a digest, never kept.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Mapping

from kairo_guard.otel.protocols import ContentJudges

CLEAN_VERDICT_SECONDS = 10.0
"""How long a text judged clean stays judged: content indexed later (a tenant's upload
of that very text) must be caught within this time."""
_CACHE_SIZE = 16384
_UNKNOWN = object()
_CACHE_TEXT = 256
"""Texts up to this many characters are cached under themselves, longer ones under a
128-bit digest, so the cache holds at most a few megabytes of text."""


def _cache_key(text: str) -> str | bytes:
    if len(text) <= _CACHE_TEXT:
        return text
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class TextVerdicts:
    """Judges texts with the fingerprint index and the PII gate, and caches verdicts.

    Args:
        judges: whose fingerprint index and PII gate decide (a Guard, or any
            :class:`~kairo_guard.otel.protocols.ContentJudges`).
    """

    def __init__(self, judges: ContentJudges) -> None:
        self._judges = judges
        self._verdicts: dict[str | bytes, tuple[str | None, float]] = {}
        self.clock = time.monotonic
        """The clock of the clean-verdict cache (replaceable in tests)."""
        self._lock = threading.Lock()

    def reason(self, text: str) -> str | None:
        """Why ``text`` must be scrubbed (``fingerprint``, ``pii``,
        ``pii-unavailable``), or None; from the cache when judged before."""
        if not text.strip():
            return None
        now = self.clock()
        key = _cache_key(text)
        cached = self._cached(key, now)
        if cached is not _UNKNOWN:
            return cached  # type: ignore[return-value]
        verdicts = self._judge({key: text})
        self._remember(verdicts, now)
        return verdicts[key]

    def prejudge(self, texts: Iterable[str]) -> None:
        """Judge together the texts of an export batch that are not in the cache.

        Only a speed-up: a text it leaves unjudged (or any error here) is judged on its
        own later, by :meth:`reason`.
        """
        now = self.clock()
        todo: dict[str | bytes, str] = {}
        for text in texts:
            if text.strip():
                key = _cache_key(text)
                if key not in todo and self._cached(key, now) is _UNKNOWN:
                    todo[key] = text
        self._remember(self._judge(todo), now)

    @property
    def cached_keys(self) -> list[str | bytes]:
        """The keys the cache holds (texts up to 256 characters, digests of longer ones)."""
        with self._lock:
            return list(self._verdicts)

    def _judge(self, texts: Mapping[str | bytes, str]) -> dict[str | bytes, str | None]:
        """Per cache key, why its text must be scrubbed, or None: the fingerprint index
        per text, then the PII gate on the rest in one batch (both read past invisible
        characters, such as the NULs of UTF-16 text read as UTF-8)."""
        verdicts: dict[str | bytes, str | None] = {}
        rest: list[tuple[str | bytes, str]] = []
        for key, text in texts.items():
            if self._judges.fingerprints.overlap(text) is not None:
                verdicts[key] = "fingerprint"
            else:
                rest.append((key, text))
        pii = self._judges.pii
        found = pii.entity_types_each([t for _, t in rest]) if pii is not None and rest else None
        for i, (key, _) in enumerate(rest):
            if pii is None:
                verdicts[key] = None
            elif found is None:
                verdicts[key] = "pii-unavailable"
            else:
                verdicts[key] = "pii" if found[i] else None
        return verdicts

    def _cached(self, key: str | bytes, now: float) -> str | object | None:
        """The cached verdict, or ``_UNKNOWN`` (none, or a clean one that expired)."""
        cached = self._verdicts.get(key)
        if cached is not None and (cached[0] is not None or now < cached[1]):
            return cached[0]
        return _UNKNOWN

    def _remember(self, verdicts: Mapping[str | bytes, str | None], now: float) -> None:
        with self._lock:
            if len(self._verdicts) + len(verdicts) > _CACHE_SIZE:
                self._verdicts.clear()
            for key, reason in verdicts.items():
                held = self._verdicts.get(key)
                if reason is None and held is not None and held[0] is not None:
                    continue  # a clean verdict judged earlier never undoes a finding
                self._verdicts[key] = (reason, now + CLEAN_VERDICT_SECONDS)
