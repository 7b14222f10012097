"""ScrubbingLogExporter with the real logs SDK: in memory, and over OTLP/HTTP to loopback."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kg_testing import make_guard
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from otel_support import attributes, otlp_receiver

from kairo_guard import Guard, KeyRing
from kairo_guard.otel.logs import ScrubbingLogExporter
from kairo_guard.otel.scrubbing import MAX_DEPTH

CUSTOMER = (
    "Globex board minutes: the Q3 acquisition of Initech closes on 14 October, "
    "price 41 million, integration lead reports to the CFO, layoffs stay confidential "
    "until the all-hands in November."
)
EXCERPT = CUSTOMER[10:170]
PII_TEXT = "Please call Maria Gonzalez at maria.gonzalez@example.com or +1 415 555 0134."


class Pipeline:
    """A logger provider whose records go through the scrubber into memory, and
    (unscrubbed) into a second exporter: what another processor sees."""

    def __init__(self, guard: Guard, **options: Any) -> None:
        self.memory = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.beside = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.scrubber = ScrubbingLogExporter(self.memory, guard, **options)
        self.provider = LoggerProvider()
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.scrubber))
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.beside))
        self.logger = self.provider.get_logger("app")

    def emit(self, body: Any, attrs: dict[str, Any] | None = None, **kw: Any) -> Any:
        """Emit one record; return the scrubbed copy that was exported."""
        self.logger.emit(body=body, attributes=attrs, **kw)
        return self.memory.get_finished_logs()[-1].log_record


@pytest.fixture
def indexed(guard: Guard) -> Guard:
    guard.index_content("globex", CUSTOMER)
    return guard


def test_content_in_body_and_attributes_is_masked_the_rest_kept(indexed: Guard) -> None:
    pipe = Pipeline(indexed)
    record = pipe.emit(
        f"saved document: {EXCERPT}",
        {"app.doc": EXCERPT, "db.statement": "SELECT 1", "rows": 3, "http.route": "/docs"},
    )
    assert record.body == "[scrubbed:fingerprint]"
    assert dict(record.attributes) == {
        "app.doc": "[scrubbed:fingerprint]",
        "db.statement": "[scrubbed:key]",
        "rows": 3,
        "http.route": "/docs",
    }
    clean = pipe.emit("batch 7 finished in 41 ms", {"rows": 3})
    assert (clean.body, dict(clean.attributes)) == ("batch 7 finished in 41 ms", {"rows": 3})
    assert pipe.scrubber.scrubbed == {"fingerprint": 2, "key": 1}


def test_the_processors_own_record_is_not_changed(indexed: Guard) -> None:
    pipe = Pipeline(indexed)
    pipe.emit(EXCERPT, {"app.doc": EXCERPT})
    (original,) = pipe.beside.get_finished_logs()
    assert original.log_record.body == EXCERPT
    assert dict(original.log_record.attributes or {})["app.doc"] == EXCERPT


def test_a_structured_body_is_judged_entry_by_entry(indexed: Guard) -> None:
    pipe = Pipeline(indexed, content_keys=["log.body.prompt"])
    record = pipe.emit(
        {"job": "nightly", "user": {"note": EXCERPT, "n": 2}, "prompt": "hi", "tags": [EXCERPT]}
    )
    assert record.body == {
        "job": "nightly",
        "user": {"note": "[scrubbed:fingerprint]", "n": 2},
        "prompt": "[scrubbed:key]",
        "tags": ["[scrubbed:fingerprint]"],
    }


def test_a_nested_attribute_carrying_content_is_masked_whole(indexed: Guard) -> None:
    pipe = Pipeline(indexed)
    record = pipe.emit("ok", {"app.meta": ["a", "b", EXCERPT]})
    assert record.attributes["app.meta"] == "[scrubbed:fingerprint]"


def test_hostile_nesting_is_masked_without_a_crash(guard: Guard) -> None:
    body: Any = "leaf"
    for _ in range(MAX_DEPTH * 20):
        body = {"k": body}
    record = Pipeline(guard).emit(body)
    node = record.body
    for _ in range(MAX_DEPTH + 1):
        node = node["k"]
    assert node == "[scrubbed:too-deep]"


def test_an_exception_quoting_content_is_masked_in_message_and_stacktrace(
    indexed: Guard,
) -> None:
    pipe = Pipeline(indexed)
    with warnings.catch_warnings():  # the SDK's handler is deprecated, still widely used
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=pipe.provider)
    log = logging.getLogger("kairo-guard-test.leaky")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise ValueError(f"cannot parse: {EXCERPT}")
        except ValueError:
            log.exception("upload failed", extra={"app.doc_id": "d-17"})
    finally:
        log.removeHandler(handler)
    record = pipe.memory.get_finished_logs()[-1].log_record
    assert record.body == "upload failed"
    attrs = dict(record.attributes or {})
    assert attrs["exception.type"] == "ValueError"
    assert attrs["exception.message"] == "[scrubbed:fingerprint]"
    assert attrs["exception.stacktrace"] == "[scrubbed:fingerprint]"
    assert attrs["app.doc_id"] == "d-17"
    assert "Initech" not in repr(pipe.memory.get_finished_logs()[-1].to_json())


def test_pii_found_by_the_gate_is_masked(pii_guard: Guard) -> None:
    pipe = Pipeline(pii_guard)
    assert pipe.emit(PII_TEXT).body == "[scrubbed:pii]"
    assert pipe.emit("the batch finished").body == "the batch finished"


def test_when_the_pii_gate_cannot_run_every_unsafe_text_is_masked(
    tmp_path: Path, ring: KeyRing
) -> None:
    config = tmp_path / "kairo-guard.toml"
    config.write_text(f'[pii]\nmodel = "{tmp_path / "no-such-model"}"\n')
    with make_guard(tmp_path / "s", ring=ring, pii_gate=True, config_file=config) as guard:
        record = Pipeline(guard).emit("batch 7 finished", {"http.route": "/x", "n": 2})
    assert record.body == "[scrubbed:pii-unavailable]"
    assert dict(record.attributes) == {"http.route": "/x", "n": 2}


def test_a_record_that_cannot_be_scrubbed_is_dropped_not_exported(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = Pipeline(guard)
    # a double for an unexpected failure inside the copy (the SDK's record is sound)
    monkeypatch.setattr("kairo_guard.otel.logs.copy.copy", _raise)
    pipe.logger.emit(body="anything")
    assert pipe.memory.get_finished_logs() == ()
    assert pipe.scrubber.scrubbed["record-dropped"] == 1


def _raise(*args: object) -> None:
    raise RuntimeError("copy failed")


class _Failing(LogRecordExporter):
    """An exporter that fails in every way (stands in for a broken backend client)."""

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        raise ConnectionError("collector down")

    def shutdown(self) -> None:
        raise ConnectionError("collector down")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        raise ConnectionError("collector down")


def test_a_failing_inner_exporter_never_raises_into_the_host(guard: Guard) -> None:
    scrubber = ScrubbingLogExporter(_Failing(), guard)
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(scrubber))
    provider.get_logger("app").emit(body="x")
    assert scrubber.export([]) is LogRecordExportResult.FAILURE
    assert scrubber.force_flush() is False
    scrubber.shutdown()


@pytest.fixture
def otlp_logs(tmp_path: Path, ring: KeyRing) -> Iterator[tuple[Guard, LoggerProvider, Any]]:
    with otlp_receiver() as (_, received):
        provider = LoggerProvider()
        with make_guard(tmp_path / "otlp", ring=ring, pii_gate=True) as guard:
            exporter = ScrubbingLogExporter(OTLPLogExporter(endpoint=received.logs_url), guard)
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
            yield guard, provider, received
            provider.shutdown()


def test_otlp_log_export_over_loopback_carries_no_content_or_pii(
    otlp_logs: tuple[Guard, LoggerProvider, Any],
) -> None:
    guard, provider, received = otlp_logs
    guard.index_content("globex", CUSTOMER)
    logger = provider.get_logger("ingest")
    logger.emit(body=f"stored {EXCERPT}", attributes={"app.contact": PII_TEXT, "rows": 1})
    logger.emit(body={"note": EXCERPT, "job": "nightly"}, attributes={"db.statement": "x"})
    logger.emit(body="batch 7 finished", attributes={"rows": 2})
    assert provider.force_flush()
    records = received.log_records()
    assert len(records) == 3
    assert records[0].body.string_value == "[scrubbed:fingerprint]"
    assert attributes(records[0].attributes) == {"app.contact": "[scrubbed:pii]", "rows": 1}
    assert records[2].body.string_value == "batch 7 finished"
    raw = b"".join(received.raw)
    for planted in ("Initech", "Maria", "maria.gonzalez", "555 0134"):
        assert planted.encode() not in raw, planted
    assert b"nightly" in raw  # a clean entry of the structured body went out


def test_event_name_and_an_odd_severity_text_are_judged_levels_kept(indexed: Guard) -> None:
    pipe = Pipeline(indexed)
    odd = pipe.emit("ok", event_name=EXCERPT, severity_text=EXCERPT)
    assert (odd.event_name, odd.severity_text) == ("[scrubbed:fingerprint]",) * 2
    plain = pipe.emit("ok", event_name="job.finished", severity_text="WARN")
    assert (plain.event_name, plain.severity_text) == ("job.finished", "WARN")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (EXCERPT.encode("utf-16-le"), "[scrubbed:fingerprint]"),  # NULs do not hide it
        ("\u00e9t\u00e9 ".encode("utf-16-be") * 3, "[scrubbed:undecodable]"),  # not UTF-8
        (EXCERPT.encode(), "[scrubbed:fingerprint]"),
        ({EXCERPT.encode(): 1, "k": "v"}, "[scrubbed:fingerprint]"),  # a bytes key
        ({(EXCERPT,): 1}, "[scrubbed:fingerprint]"),  # a key the encoder would str()
        ({"seen": {EXCERPT, "x"}}, {"seen": "[scrubbed:unsupported]"}),  # not a log value
        (b"plain bytes", b"plain bytes"),
    ],
    ids=[
        "utf16-bytes",
        "undecodable-bytes",
        "utf8-bytes",
        "bytes-key",
        "tuple-key",
        "set",
        "clean-bytes",
    ],
)
def test_bodies_of_every_shape_are_judged_or_masked(
    indexed: Guard, body: Any, expected: Any
) -> None:
    assert Pipeline(indexed).emit(body).body == expected


def test_an_attribute_whose_name_is_content_is_dropped(indexed: Guard) -> None:
    record = Pipeline(indexed).emit("ok", {EXCERPT: 1, "app.doc_id": "d-17", "userId": 7})
    assert dict(record.attributes or {}) == {"app.doc_id": "d-17", "userId": 7}


_PLANTED = st.sampled_from([EXCERPT, EXCERPT.encode(), EXCERPT.encode("utf-16-le")])
_LEAVES = st.one_of(
    st.text(max_size=20), st.binary(max_size=20), st.integers(), st.booleans(), st.none(),
    _PLANTED,
)  # fmt: skip
_KEYS = st.one_of(st.text(max_size=10), st.binary(max_size=10), st.integers(), _PLANTED)
_BODIES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


def _texts_in(value: Any) -> Iterator[str]:
    """Every text a collector could read out of an exported value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "ignore").replace("\x00", "")
        yield value.decode("utf-16-le", "ignore")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _texts_in(k if isinstance(k, str | bytes) else str(k))
            yield from _texts_in(v)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts_in(item)


_ATTRIBUTES = st.dictionaries(st.text(min_size=1, max_size=8), _BODIES, max_size=3)
_EVENT_NAMES = st.one_of(st.none(), st.text(max_size=10), st.just(EXCERPT))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(body=_BODIES, attributes=_ATTRIBUTES, event_name=_EVENT_NAMES)
def test_planted_content_never_leaves_in_any_body_attribute_or_name(
    indexed: Guard, body: Any, attributes: dict[str, Any], event_name: str | None
) -> None:
    pipe = Pipeline(indexed)
    pipe.logger.emit(body=body, attributes=attributes, event_name=event_name)
    for record in pipe.memory.get_finished_logs():
        log = record.log_record
        out = [log.body, dict(log.attributes or {}), log.event_name or "", log.severity_text or ""]
        for text in _texts_in(out):
            assert "Initech" not in text
