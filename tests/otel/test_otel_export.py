"""ScrubbingSpanExporter with the real SDK: in memory, and over OTLP/HTTP to loopback."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from kg_testing import make_guard, running_server
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_support import Sdk, attributes, otlp_receiver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import Guard, KeyRing, make_sink
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.otel.export import CLEAN_VERDICT_SECONDS, ScrubbingSpanExporter
from kairo_guard.otel.names import (
    ATTR_BLOCKED,
    ATTR_DECISION,
    ATTR_REASON,
    ATTR_RULES,
    ATTR_TENANT,
    CHECK_SPAN,
    METRIC_SCRUBBED,
    REQUEST_SPAN,
)

CUSTOMER = (
    "Globex board minutes: the Q3 acquisition of Initech closes on 14 October, "
    "price 41 million, integration lead reports to the CFO, layoffs stay confidential "
    "until the all-hands in November."
)
EXCERPT = CUSTOMER[10:170]
PII_TEXT = "Please call Maria Gonzalez at maria.gonzalez@example.com or +1 415 555 0134."


def _pipeline(guard: Guard, **options: Any) -> tuple[TracerProvider, ScrubbingSpanExporter,
                                                     InMemorySpanExporter]:  # fmt: skip
    memory = InMemorySpanExporter()
    scrubber = ScrubbingSpanExporter(memory, guard, **options)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(scrubber))
    return provider, scrubber, memory


def _emit(provider: TracerProvider, attrs: dict[str, Any], event: dict[str, Any]) -> None:
    tracer = provider.get_tracer("host")
    with tracer.start_as_current_span("work") as span:
        span.set_attributes(attrs)
        span.add_event("note", event)
        span.set_status(trace.StatusCode.ERROR, f"failed on: {EXCERPT}")


def _only(memory: InMemorySpanExporter) -> Any:
    (span,) = memory.get_finished_spans()
    return span


@pytest.fixture
def indexed(guard: Guard) -> Guard:
    guard.index_content("globex", CUSTOMER)
    return guard


def test_content_keys_and_fingerprinted_text_are_masked_the_rest_kept(indexed: Guard) -> None:
    provider, scrubber, memory = _pipeline(indexed)
    _emit(
        provider,
        {
            "http.request.body": "anything at all",
            "db.statement": "SELECT 1",
            "gen_ai.prompt.0.content": "short prompt",
            "app.note": f"user pasted: {EXCERPT}",
            "app.tags": ["fine", EXCERPT],
            "app.count": 3,
            "http.route": "/ingest",
            "kairo_guard.decision": "block",
            "app.message": "batch 7 finished",
        },
        {"text": EXCERPT, "rows": 12},
    )
    span = _only(memory)
    attrs = span.attributes
    assert attrs["http.request.body"] == "[scrubbed:key]"
    assert attrs["db.statement"] == "[scrubbed:key]"
    assert attrs["gen_ai.prompt.0.content"] == "[scrubbed:key]"
    assert attrs["app.note"] == "[scrubbed:fingerprint]"
    assert attrs["app.tags"] == "[scrubbed:fingerprint]"
    assert (attrs["app.count"], attrs["http.route"]) == (3, "/ingest")
    assert attrs["kairo_guard.decision"] == "block"
    assert attrs["app.message"] == "batch 7 finished"
    (event,) = span.events
    assert dict(event.attributes) == {"text": "[scrubbed:fingerprint]", "rows": 12}
    assert span.status.description == "[scrubbed:fingerprint]"
    assert scrubber.scrubbed == {"key": 3, "fingerprint": 4}


def test_text_judged_clean_is_judged_again_once_a_tenant_uploads_it(
    guard: Guard,
) -> None:
    provider, scrubber, memory = _pipeline(guard)
    now = [1000.0]
    scrubber.scrubber.clock = lambda: now[0]

    def note() -> object:
        _emit(provider, {"app.note": EXCERPT}, {})
        return dict(memory.get_finished_spans()[-1].attributes or {})["app.note"]

    assert note() == EXCERPT  # nobody's content yet
    guard.index_content("globex", CUSTOMER)
    assert note() == EXCERPT  # the clean verdict is cached for a while
    now[0] += CLEAN_VERDICT_SECONDS
    assert note() == "[scrubbed:fingerprint]"


def test_remove_drops_scrubbed_attributes(indexed: Guard) -> None:
    provider, _, memory = _pipeline(indexed, remove=True, content_keys=["app.secret"])
    _emit(provider, {"app.secret": 1, "app.note": EXCERPT, "db.statement": "kept"}, {})
    span = _only(memory)
    assert dict(span.attributes) == {"db.statement": "kept"}


def test_scrubbed_values_are_counted_in_the_metric(tmp_path: Path, ring: KeyRing) -> None:
    sdk = Sdk()
    with make_guard(
        tmp_path / "s", ring=ring, pii_gate=False, meter_provider=sdk.meter_provider
    ) as guard:
        provider, _, _ = _pipeline(guard)
        _emit(provider, {"http.request.body": "x", "db.statement": "y"}, {})
    points = {a[ATTR_REASON]: p.value for a, p in sdk.points(METRIC_SCRUBBED)}
    assert points == {"key": 2}


def test_an_error_while_judging_a_value_masks_it(
    indexed: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(content: object) -> None:
        raise RuntimeError("store is gone")

    # a double for a failing store: the real one does not fail on demand
    monkeypatch.setattr(indexed.fingerprints, "overlap", broken)
    provider, scrubber, memory = _pipeline(indexed)
    _emit(provider, {"app.note": "harmless", "app.n": 1}, {})
    span = _only(memory)
    assert span.attributes["app.note"] == "[scrubbed:error]"
    assert span.attributes["app.n"] == 1
    assert scrubber.scrubbed["error"] >= 1


class _Failing(SpanExporter):
    """An exporter that fails in every way (stands in for a broken backend client)."""

    def __init__(self) -> None:
        self.flushed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise ConnectionError("collector down")

    def shutdown(self) -> None:
        raise ConnectionError("collector down")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self.flushed = True
        raise ConnectionError("collector down")


def test_a_failing_inner_exporter_never_raises_into_the_host(guard: Guard) -> None:
    inner = _Failing()
    scrubber = ScrubbingSpanExporter(inner, guard)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(scrubber))
    with provider.get_tracer("t").start_as_current_span("x"):
        pass
    assert scrubber.force_flush() is False
    assert inner.flushed
    scrubber.shutdown()


def test_shutdown_and_flush_are_forwarded(guard: Guard) -> None:
    memory = InMemorySpanExporter()
    scrubber = ScrubbingSpanExporter(memory, guard)
    assert scrubber.force_flush() is True
    scrubber.shutdown()
    assert scrubber.export([]) is SpanExportResult.FAILURE  # the inner one is shut down


def test_when_the_pii_gate_cannot_run_every_unsafe_string_is_masked(
    tmp_path: Path, ring: KeyRing
) -> None:
    config = tmp_path / "kairo-guard.toml"
    config.write_text(f'[pii]\nmodel = "{tmp_path / "no-such-model"}"\n')
    with make_guard(tmp_path / "s", ring=ring, pii_gate=True, config_file=config) as guard:
        provider, _, memory = _pipeline(guard)
        _emit(provider, {"app.message": "batch 7 finished", "http.route": "/x", "n": 2}, {})
    span = _only(memory)
    assert span.attributes["app.message"] == "[scrubbed:pii-unavailable]"
    assert (span.attributes["http.route"], span.attributes["n"]) == ("/x", 2)


def test_pii_found_by_the_gate_is_masked(pii_guard: Guard) -> None:
    provider, _, memory = _pipeline(pii_guard)
    _emit(provider, {"app.contact": PII_TEXT, "app.message": "the batch finished"}, {})
    span = _only(memory)
    assert span.attributes["app.contact"] == "[scrubbed:pii]"
    assert span.attributes["app.message"] == "the batch finished"


def _leaky_service(guard: Guard, tracer_provider: TracerProvider) -> GuardMiddleware:
    """A handler that copies the body into span attributes, as careless code does."""

    async def ingest(request: Request) -> JSONResponse:
        body = (await request.body()).decode()
        span = trace.get_current_span()
        span.set_attribute("http.request.body", body)
        span.set_attribute("app.preview", body[:200])
        with tracer_provider.get_tracer("app").start_as_current_span("db") as db:
            db.set_attribute("db.statement", f"INSERT INTO docs VALUES ('{body[:40]}')")
            db.add_event("row", {"text": body})
        sink = make_sink("t", "shared-training")
        report = guard.check([{"text": body}], sink=sink, mode="filter")
        return JSONResponse({"blocked": report.blocked})

    app = Starlette(routes=[Route("/ingest", ingest, methods=["POST"])])
    return GuardMiddleware(app, guard=guard)


@pytest.fixture
def otlp_guard(tmp_path: Path, ring: KeyRing) -> Iterator[tuple[Guard, TracerProvider, Any]]:
    with otlp_receiver() as (endpoint, received):
        provider = TracerProvider()
        with make_guard(
            tmp_path / "otlp", ring=ring, pii_gate=True, tracer_provider=provider
        ) as guard:
            exporter = ScrubbingSpanExporter(OTLPSpanExporter(endpoint=endpoint), guard)
            provider.add_span_processor(BatchSpanProcessor(exporter))
            yield guard, provider, received
            provider.shutdown()


def test_otlp_export_over_loopback_carries_decisions_and_no_content_or_pii(
    otlp_guard: tuple[Guard, TracerProvider, Any],
) -> None:
    guard, provider, received = otlp_guard
    guard.index_content("globex", CUSTOMER)  # an earlier ingestion of this text
    key = new_api_key(guard.store, "acme")
    body = f"{EXCERPT} {PII_TEXT}"
    with running_server(_leaky_service(guard, provider)) as url:
        response = httpx.post(f"{url}/ingest", content=body, headers={"x-api-key": key})
    assert response.json() == {"blocked": 1}
    assert provider.force_flush()
    spans = {s.name: s for s in received.spans()}
    assert {CHECK_SPAN, REQUEST_SPAN, "db"} <= set(spans)
    check = attributes(spans[CHECK_SPAN].attributes)
    assert check[ATTR_DECISION] == "block"
    assert check[ATTR_BLOCKED] == 1
    assert check[ATTR_RULES]
    request = attributes(spans[REQUEST_SPAN].attributes)
    assert request[ATTR_TENANT] == guard.keys.pseudonym("acme")
    assert request["http.request.body"] == "[scrubbed:key]"
    assert request["app.preview"].startswith("[scrubbed:")
    raw = b"".join(received.raw)
    for planted in ("Initech", "Maria", "maria.gonzalez", "555 0134", "acme"):
        assert planted.encode() not in raw, planted


def test_a_map_value_is_judged_by_its_own_keys_and_entries(indexed: Guard) -> None:
    provider, _, memory = _pipeline(indexed)
    _emit(
        provider,
        {
            "http": {"route": EXCERPT},  # not the safe http.route attribute
            "kairo_guard": {"note": EXCERPT},
            "app.seen": {EXCERPT: 1},  # content as a map key
            "app.ok": {"route": "/docs", "n": 2},
        },
        {},
    )
    attrs = dict(_only(memory).attributes or {})
    assert attrs["http"] == "[scrubbed:fingerprint]"
    assert attrs["kairo_guard"] == "[scrubbed:fingerprint]"
    assert attrs["app.seen"] == "[scrubbed:fingerprint]"
    assert attrs["app.ok"] == {"route": "/docs", "n": 2}


def test_span_and_event_names_carrying_content_are_masked_own_names_kept(
    indexed: Guard,
) -> None:
    provider, scrubber, memory = _pipeline(indexed)
    tracer = provider.get_tracer("host")
    with tracer.start_as_current_span(f"summarize: {EXCERPT}") as span:
        span.add_event(f"got: {EXCERPT}")
        span.add_event("kairo_guard.blocked", {"kairo_guard.rule": "r"})
    with tracer.start_as_current_span("POST /documents"):
        pass
    leaky, clean = memory.get_finished_spans()
    assert leaky.name == "[scrubbed:fingerprint]"
    assert [e.name for e in leaky.events] == ["[scrubbed:fingerprint]", "kairo_guard.blocked"]
    assert clean.name == "POST /documents"
    assert scrubber.scrubbed["fingerprint"] == 2


def test_long_texts_are_judged_and_cached_by_digest_not_kept(indexed: Guard) -> None:
    provider, scrubber, memory = _pipeline(indexed)
    long_clean = "row=1 ok; " * 20_000
    long_leak = long_clean + EXCERPT
    for _ in range(2):  # the second time from the cache
        _emit(provider, {"app.a": long_clean, "app.b": long_leak}, {})
        attrs = dict(memory.get_finished_spans()[-1].attributes or {})
        assert attrs["app.a"] == long_clean
        assert attrs["app.b"] == "[scrubbed:fingerprint]"
    kept = scrubber.scrubber.verdicts.cached_keys
    assert kept
    assert max(len(k) for k in kept) <= 256  # no 200,000-character key held


def test_the_texts_of_an_export_batch_are_judged_together(
    pii_guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pii_guard.pii is not None
    gate = pii_guard.pii._get()  # the real gate; the spy below only counts its calls
    calls: list[int] = []
    scan = gate.scan

    def counted(texts: Sequence[str]) -> Any:
        calls.append(len(texts))
        return scan(texts)

    monkeypatch.setattr(gate, "scan", counted)
    memory = InMemorySpanExporter()
    scrubber = ScrubbingSpanExporter(memory, pii_guard)
    provider = TracerProvider()  # spans made here, exported by hand as one batch
    tracer = provider.get_tracer("svc")
    spans = []
    for i in range(20):
        span = tracer.start_span(f"job {i}")
        span.set_attributes({"app.note": PII_TEXT if i == 7 else f"step {i} wrote rows"})
        span.end()
        spans.append(span)
    assert scrubber.export(spans) is SpanExportResult.SUCCESS  # type: ignore[arg-type]
    assert calls == [40]  # 20 names and 20 notes, in one call
    notes = [dict(s.attributes or {})["app.note"] for s in memory.get_finished_spans()]
    assert notes[7] == "[scrubbed:pii]"
    assert notes[:7] + notes[8:] == [f"step {i} wrote rows" for i in range(20) if i != 7]


def test_a_span_attribute_whose_name_is_content_is_dropped(indexed: Guard) -> None:
    provider, scrubber, memory = _pipeline(indexed)
    _emit(provider, {EXCERPT: 1, "app.doc_id": "d-17"}, {})
    assert dict(_only(memory).attributes or {}) == {"app.doc_id": "d-17"}
    assert scrubber.scrubbed["fingerprint"] >= 1


def test_a_tracestate_carrying_pii_is_dropped_from_exported_spans(pii_guard: Guard) -> None:
    provider, scrubber, memory = _pipeline(pii_guard)
    tracer = provider.get_tracer("svc")
    for value in ("maria.gonzalez@example.com", "t61rcWkgMzE"):
        remote = trace.SpanContext(
            0xABC, 0xDEF, is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            trace_state=trace.TraceState([("vendor", value)]),
        )  # fmt: skip
        parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        tracer.start_span("POST /documents", context=parent).end()
    leaky, clean = memory.get_finished_spans()
    assert dict(leaky.context.trace_state) == {}
    assert dict(clean.context.trace_state) == {"vendor": "t61rcWkgMzE"}
    assert leaky.parent is not None
    assert (leaky.context.trace_id, leaky.parent.span_id) == (0xABC, 0xDEF)  # still linked
    assert scrubber.scrubbed["pii"] >= 1


def test_a_clean_verdict_arriving_late_never_undoes_a_finding(guard: Guard) -> None:
    # two export threads judging one text: the one that saw it before it was indexed
    # remembers last; the text must stay scrubbed
    scrubber = ScrubbingSpanExporter(InMemorySpanExporter(), guard).scrubber
    scrubber.verdicts._remember({EXCERPT: "fingerprint"}, 0.0)
    scrubber.verdicts._remember({EXCERPT: None}, 0.0)
    assert scrubber.judge(EXCERPT) == "fingerprint"


def test_a_seal_in_a_host_span_is_masked_its_tenant_id_never_exported(guard: Guard) -> None:
    # a seal carries its tenant id in clear; host instrumentation may record the
    # middleware's kairo-provenance response header or a record's _kairo field
    seal = guard.seal({"text": "quarterly notes"}, data_class="customer_content",
                      tenant="zebracorp", source="upload")  # fmt: skip
    assert "~zebracorp~" in seal
    provider, scrubber, memory = _pipeline(guard)
    _emit(
        provider,
        {
            "http.response.header.kairo-provenance": [seal],
            "app.record": f'{{"text": "x", "_kairo": "{seal}"}}',
            "app.cut": seal[: seal.index("~zebracorp~") + 11],  # a seal cut short
            "app.version": "kg1.0 released",  # the prefix alone is not a seal
        },
        {"rows": 1},
    )
    span = _only(memory)
    assert span.attributes["http.response.header.kairo-provenance"] == "[scrubbed:seal]"
    assert span.attributes["app.record"] == "[scrubbed:seal]"
    assert span.attributes["app.cut"] == "[scrubbed:seal]"
    assert span.attributes["app.version"] == "kg1.0 released"
    assert "zebracorp" not in repr(span.to_json())
    assert scrubber.scrubbed["seal"] == 3
