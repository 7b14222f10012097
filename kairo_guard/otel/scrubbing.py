"""What the scrubbing exporters share: judging telemetry values for customer content.

A value is scrubbed (masked as ``[scrubbed:<reason>]``, or removed) when

* its key is a content key (:data:`CONTENT_KEYS`: request bodies, database statements,
  GenAI prompts and completions, or any key given), whatever the value;
* it is text whose fingerprints match a tenant's ingested content (the guard's index);
* it is text in which the PII gate finds PII;
* it is text holding a ``kg1`` seal (reason ``seal``): a seal carries its tenant id in
  clear, and tenant ids leave the process only pseudonymized (a host's instrumentation
  recording the ``kairo-provenance`` header or a record's ``_kairo`` field).

If the guard runs the PII gate and the gate cannot run, every text not under a
known-safe key (:data:`SAFE_KEYS`, ``kairo_guard.*``) is masked: fail closed. Numbers
and booleans pass; an error while judging a value masks it. Needs no SDK.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from kairo_guard.core.seal import SEAL_VERSION
from kairo_guard.otel.instrumentation import GuardTelemetry
from kairo_guard.otel.names import ATTR_REASON, METRIC_SCRUBBED
from kairo_guard.otel.protocols import ContentJudges
from kairo_guard.otel.verdicts import TextVerdicts

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
MAX_DEPTH = 8
"""Nesting deeper than this in a structured value (a log body) is masked unjudged."""
_SAFE_NAMES = frozenset({"exception"})
_IDENTIFIER = re.compile(r"[a-z0-9_.\-]+")
_SEAL_MARK = f"{SEAL_VERSION}."
_SEAL = re.compile(rf"{SEAL_VERSION}\.[^.\s]+\.[0-9a-f]*~")
"""A ``kg1`` seal, whole or cut after its digest: ``kg1.<key id>.<digest>~<tenant>~...``."""
"""Attribute names of this form are not judged as text (``http.route``, ``app.doc_id``)."""


def _strings(value: object, depth: int) -> Iterator[str]:
    """The texts in a value: strings, bytes, and those in lists and maps (keys too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | bytearray):
        with contextlib.suppress(UnicodeDecodeError):  # undecodable: masked unjudged
            yield bytes(value).decode("utf-8")
    elif depth < MAX_DEPTH and isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, bool | int | float):
                yield from _strings(k if isinstance(k, bytes | bytearray) else str(k), depth + 1)
            yield from _strings(v, depth + 1)
    elif depth < MAX_DEPTH and isinstance(value, Sequence):
        for item in value:
            yield from _strings(item, depth + 1)


class ContentScrubber:
    """Judges and scrubs telemetry values; counts what it scrubbed.

    Args:
        guard: whose fingerprint index and PII gate decide what is content: a
            :class:`~kairo_guard.guard.Guard`, or any
            :class:`~kairo_guard.otel.protocols.ContentJudges`.
        content_keys: keys always scrubbed (default :data:`CONTENT_KEYS`).
        safe_keys: keys never scrubbed (default :data:`SAFE_KEYS`).
        remove: drop scrubbed attributes instead of masking their values.
        telemetry: where the ``kairo_guard.scrubbed`` counter goes (default: the
            guard's meter).
    """

    def __init__(
        self,
        guard: ContentJudges,
        *,
        content_keys: Iterable[str] = CONTENT_KEYS,
        safe_keys: Iterable[str] = SAFE_KEYS,
        remove: bool = False,
        telemetry: GuardTelemetry | None = None,
    ) -> None:
        self._content_keys = frozenset(content_keys)
        self._content_prefixes = tuple(f"{k}." for k in self._content_keys)
        self._safe_keys = frozenset(safe_keys)
        self.remove = remove
        self._telemetry = telemetry or guard.telemetry
        self.verdicts = TextVerdicts(guard)
        """Why each text seen must be scrubbed, judged once and cached."""
        self._lock = threading.Lock()
        self.scrubbed: Counter[str] = Counter()
        """Values scrubbed so far, by reason (``key``, ``fingerprint``, ``pii``,
        ``pii-unavailable``, ``seal``, ``error``, ``too-deep``, ``undecodable``, ``unsupported``;
        the exporters add the whole spans or records they dropped)."""

    @property
    def clock(self) -> Callable[[], float]:
        """The clock of the clean-verdict cache (replaceable in tests)."""
        return self.verdicts.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.verdicts.clock = clock

    def attributes(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        """A copy of ``attributes`` with every value that carries content scrubbed."""
        out: dict[str, Any] = {}
        for key, value in (attributes or {}).items():
            try:
                if (reason := self._key_name_reason(key)) is not None:
                    self.count(reason)  # a key that is itself content: dropped whole
                    continue
                reason = self.reason(key, value)
            except Exception:  # noqa: BLE001 - an unjudged value is not exported
                reason = "error"
            if reason is None:
                out[key] = value
                continue
            self.count(reason)
            if not self.remove:
                out[key] = MASK.format(reason=reason)
        return out

    def value(self, key: str, value: Any, depth: int = 0) -> Any:
        """``value`` (a log body: text, bytes, numbers, lists and maps of them, nested)
        with what carries content masked; a map's entries are judged one by one under
        ``key.<entry>`` (a map with a key that carries content is masked whole)."""
        try:
            if depth > MAX_DEPTH:
                reason: str | None = "too-deep"
            elif isinstance(value, Mapping):
                reason = self._keys_reason(value)
                if reason is None:
                    return {k: self.value(f"{key}.{k}", v, depth + 1) for k, v in value.items()}
            elif isinstance(value, list | tuple):
                return [self.value(key, item, depth + 1) for item in value]
            else:
                reason = self.reason(key, value, depth)
        except Exception:  # noqa: BLE001 - an unjudged value is not exported
            reason = "error"
        if reason is None:
            return value
        self.count(reason)
        return MASK.format(reason=reason)

    def reason(self, key: str, value: object, depth: int = 0) -> str | None:
        """Why ``value`` under ``key`` must be scrubbed, or None to keep it (a map or a
        list is scrubbed whole when any part of it, or any key of a map, must be).

        Safe keys count only for a top-level key (``depth`` 0): a map under ``http``
        with an entry ``route`` is not the ``http.route`` attribute.
        """
        if key in self._content_keys or key.startswith(self._content_prefixes):
            return "key"
        if depth == 0 and (key in self._safe_keys or key.startswith(SAFE_PREFIX)):
            return None
        if isinstance(value, bytes | bytearray):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return "undecodable"  # UTF-16, compressed: text the gate cannot read
        if isinstance(value, str):
            return self._text_reason(value)
        if value is None or isinstance(value, bool | int | float):
            return None
        if isinstance(value, Mapping | Sequence):
            if depth >= MAX_DEPTH:
                return "too-deep"
            if isinstance(value, Mapping):
                if (reason := self._keys_reason(value)) is not None:
                    return reason
                parts = ((f"{key}.{k}", v) for k, v in value.items())
            else:
                parts = ((key, v) for v in value)
            for part_key, part in parts:
                if (reason := self.reason(part_key, part, depth + 1)) is not None:
                    return reason
            return None
        return "unsupported"  # a set, an object: no telemetry value, exported as str()

    def name(self, name: str) -> str:
        """A span or event name, masked when it carries content (names of the guard's
        own spans and events, ``kairo_guard.*``, and ``exception`` are kept)."""
        if name.startswith(SAFE_PREFIX) or name in _SAFE_NAMES:
            return name
        reason = self.judge(name)
        if reason is None:
            return name
        self.count(reason)
        return MASK.format(reason=reason)

    def judge(self, text: str) -> str | None:
        """Why ``text`` must be scrubbed (an error counts as a reason), or None; counts
        nothing: the caller decides what to scrub."""
        try:
            return self._text_reason(text)
        except Exception:  # noqa: BLE001 - an unjudged text is not exported
            return "error"

    def _keys_reason(self, value: Mapping[Any, Any]) -> str | None:
        for k in value:
            if isinstance(k, bool | int | float):
                continue
            if isinstance(k, bytes | bytearray):
                try:
                    k = bytes(k).decode("utf-8")
                except UnicodeDecodeError:
                    return "undecodable"
            if (reason := self._text_reason(str(k))) is not None:
                return reason
        return None

    def _key_name_reason(self, key: str) -> str | None:
        """Why an attribute's name is itself content (``extra={text: 1}``), or None;
        dotted lowercase identifiers, as every semantic-convention key is, are not."""
        if not isinstance(key, str):
            return "unsupported"
        if _IDENTIFIER.fullmatch(key):
            return None
        return self._text_reason(key)

    def texts(self, attributes: Mapping[str, Any] | None) -> Iterator[str]:
        """The texts in ``attributes`` that :meth:`attributes` would judge (for
        :meth:`prejudge`): not under content keys or safe keys, map keys included."""
        for key, value in (attributes or {}).items():
            if isinstance(key, str) and not _IDENTIFIER.fullmatch(key):
                yield key
            skipped = key in self._content_keys or key in self._safe_keys
            if skipped or key.startswith((*self._content_prefixes, SAFE_PREFIX)):
                continue
            yield from _strings(value, 0)

    def prejudge(self, texts: Iterable[str]) -> None:
        """Judge an export batch's texts together (see :meth:`TextVerdicts.prejudge`)."""
        self.verdicts.prejudge(texts)

    def _text_reason(self, text: str) -> str | None:
        if _SEAL_MARK in text and _SEAL.search(text):
            return "seal"  # its tenant id is in clear
        return self.verdicts.reason(text)

    def count(self, reason: str) -> None:
        """Count one scrubbed value (or dropped span or record) under ``reason``."""
        with self._lock:
            self.scrubbed[reason] += 1
        self._telemetry.add(METRIC_SCRUBBED, 1, {ATTR_REASON: reason})
