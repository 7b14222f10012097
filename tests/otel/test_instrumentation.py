"""Decision spans and metrics of guard checks, with the real OpenTelemetry SDK."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from kg_testing import sealed_record
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from otel_support import Sdk

from kairo_guard import Guard, IsolationViolation, make_sink
from kairo_guard.otel.headers import inbound_span_context
from kairo_guard.otel.instrumentation import MAX_BLOCKED_EVENTS, GuardTelemetry
from kairo_guard.otel.names import (
    ATTR_ABANDONED,
    ATTR_ALLOWED,
    ATTR_BLOCKED,
    ATTR_COUNT,
    ATTR_DECISION,
    ATTR_DIGEST,
    ATTR_INDEX,
    ATTR_MODE,
    ATTR_RULE,
    ATTR_RULES,
    ATTR_SINK,
    ATTR_SINK_KIND,
    ATTR_STATUS,
    ATTR_TENANT,
    ATTR_TOTAL,
    BLOCKED_EVENT,
    BLOCKED_MORE_EVENT,
    CHECK_SPAN,
    METRIC_BYTES,
    METRIC_DECISIONS,
    METRIC_DURATION,
    METRIC_RECORDS,
    METRIC_REQUESTS,
)

SHARED = make_sink("router-train", "shared-training")
SECRET = "Acme merger plan: buy Globex in March"


def _mixed(guard: Guard) -> list[dict[str, object]]:
    return [
        sealed_record(guard, {"text": "public 1"}, data_class="operator_public"),
        guard.label_record({"text": SECRET}, tenant="acme"),
        {"text": "no seal at all"},
    ]


def _text_of(span: object) -> str:
    attrs = dict(span.attributes or {})  # type: ignore[attr-defined]
    events = [dict(e.attributes or {}) for e in span.events]  # type: ignore[attr-defined]
    return repr((attrs, events))


def test_one_check_makes_one_span_with_decision_attributes(traced: Guard, sdk: Sdk) -> None:
    report = traced.check(_mixed(traced), sink=SHARED, mode="filter")
    (span,) = sdk.finished()
    assert span.name == CHECK_SPAN
    attrs = span.attributes
    assert attrs[ATTR_SINK] == "router-train"
    assert attrs[ATTR_SINK_KIND] == "shared-training"
    assert attrs[ATTR_MODE] == "filter"
    assert (attrs[ATTR_TOTAL], attrs[ATTR_ALLOWED], attrs[ATTR_BLOCKED]) == (3, 1, 2)
    assert attrs[ATTR_DECISION] == "block"
    assert list(attrs[ATTR_RULES]) == sorted(report.by_rule)
    blocked = [e for e in span.events if e.name == BLOCKED_EVENT]
    assert [e.attributes[ATTR_INDEX] for e in blocked] == [1, 2]
    assert blocked[0].attributes[ATTR_RULE] == report.violations[0].rule
    assert len(blocked[0].attributes[ATTR_DIGEST]) == 16
    assert "Acme merger" not in _text_of(span)
    assert "acme" not in _text_of(span)


def test_span_is_a_child_of_the_callers_span_and_never_current(traced: Guard, sdk: Sdk) -> None:
    tracer = sdk.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("training-step") as parent:
        seen = []
        for _ in traced.checked(_mixed(traced), sink=SHARED, mode="observe"):
            seen.append(trace.get_current_span())
    assert seen == [parent] * 3
    (check,) = sdk.finished(CHECK_SPAN)
    assert check.parent.span_id == parent.get_span_context().span_id
    assert check.context.trace_id == parent.get_span_context().trace_id


def test_tenant_ids_appear_only_as_pseudonyms(traced: Guard, sdk: Sdk) -> None:
    sink = make_sink("ft-acme", "tenant-fine-tune", tenant="acme")
    with traced.tenant_context("acme"):
        traced.check([{"text": "x"}], sink=sink, mode="observe")
    (span,) = sdk.finished()
    pseudonym = traced.keys.pseudonym("acme")
    assert span.attributes[ATTR_TENANT] == pseudonym
    assert span.attributes[ATTR_SINK] == f"ft-{pseudonym}"
    assert "acme" not in _text_of(span).replace(pseudonym, "")


def test_blocked_events_stop_at_the_cap_then_count_the_rest(traced: Guard, sdk: Sdk) -> None:
    traced.check([{"n": i} for i in range(MAX_BLOCKED_EVENTS + 8)], sink=SHARED, mode="filter")
    (span,) = sdk.finished()
    names = [e.name for e in span.events]
    assert names.count(BLOCKED_EVENT) == MAX_BLOCKED_EVENTS
    (more,) = [e for e in span.events if e.name == BLOCKED_MORE_EVENT]
    assert more.attributes[ATTR_COUNT] == 8


def test_enforce_violation_ends_the_span_with_error_status(traced: Guard, sdk: Sdk) -> None:
    with pytest.raises(IsolationViolation):
        list(traced.checked(_mixed(traced), sink=SHARED, mode="enforce"))
    (span,) = sdk.finished()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.attributes[ATTR_TOTAL] == 2  # stopped at the first refused record


def test_when_a_lazy_check_is_dropped_unread_then_its_span_still_ends(
    traced: Guard, sdk: Sdk
) -> None:
    iterator = traced.checked(iter(_mixed(traced)), sink=SHARED)
    assert sdk.finished() == []
    del iterator
    gc.collect()
    (span,) = sdk.finished()
    assert span.attributes[ATTR_ABANDONED] is True


def test_allowed_check_has_allow_decision_and_no_events(traced: Guard, sdk: Sdk) -> None:
    record = sealed_record(traced, {"text": "public"}, data_class="operator_public")
    traced.check([record], sink=SHARED)
    (span,) = sdk.finished()
    assert span.attributes[ATTR_DECISION] == "allow"
    assert span.events == ()


def test_metrics_count_decisions_by_rule_records_and_duration(traced: Guard, sdk: Sdk) -> None:
    report = traced.check(_mixed(traced), sink=SHARED, mode="filter")
    decisions = {(a[ATTR_RULE], a[ATTR_DECISION]): p.value for a, p in sdk.points(METRIC_DECISIONS)}
    allow_rule = next(r for r in report.by_rule if r.startswith("allow"))
    assert decisions[(allow_rule, "allow")] == 1
    assert sum(decisions.values()) == 3
    assert {a[ATTR_SINK] for a, _ in sdk.points(METRIC_DECISIONS)} == {"router-train"}
    ((attrs, records),) = sdk.points(METRIC_RECORDS)
    assert records.value == 3
    ((attrs, duration),) = sdk.points(METRIC_DURATION)
    assert duration.count == 1
    assert attrs[ATTR_DECISION] == "block"


def test_without_an_sdk_checks_work_and_make_no_spans(guard: Guard) -> None:
    # the guard fixture has no providers: the global no-op API is used
    report = guard.check(_mixed(guard), sink=SHARED, mode="filter")
    assert report.blocked == 2
    assert not trace.get_current_span().is_recording()


def test_a_global_sdk_configured_after_the_guard_is_honoured(tmp_path: Path) -> None:
    # the global providers can be set once per process: this runs in its own
    script = f"""
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from kairo_guard import make_sink
from kg_testing import make_guard

guard = make_guard({str(tmp_path / "g")!r}, pii_gate=False)
guard.check([{{"a": 1}}], sink=make_sink("s", "shared-training"), mode="filter")
spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
guard.check([{{"a": 2}}], sink=make_sink("s", "shared-training"), mode="filter")
names = [m.name for rm in reader.get_metrics_data().resource_metrics
         for sm in rm.scope_metrics for m in sm.metrics]
print(len(spans.get_finished_spans()), "kairo_guard.decisions" in names)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "True"]


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        " \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03 ",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future-field",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + " " * 600,
        "",
        "garbage",
    ],
)
def test_inbound_traceparent_is_read_as_the_apis_propagator_reads_it(traceparent: str) -> None:
    headers = [(b"traceparent", traceparent.encode()), (b"tracestate", b"vendor=v1,other=2")]
    carrier = {"traceparent": traceparent, "tracestate": "vendor=v1,other=2"}
    reference = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier))
    expected = reference.get_span_context()
    got = inbound_span_context(headers)
    if not expected.is_valid:
        assert got is None
    else:
        assert got == expected
        assert got.trace_state == expected.trace_state


def test_request_counts_from_many_threads_are_all_reported() -> None:
    sdk = Sdk()
    telemetry = GuardTelemetry(sdk.tracer_provider, sdk.meter_provider)

    def count(n: int) -> None:
        for i in range(n):
            telemetry.count_request("allow" if i % 4 else "deny", 200 if i % 4 else 403, 10)

    threads = [threading.Thread(target=count, args=(3_000,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first = {(a[ATTR_DECISION], a[ATTR_STATUS]): p.value for a, p in sdk.points(METRIC_REQUESTS)}
    assert first == {("allow", 200): 18_000, ("deny", 403): 6_000}
    count(4)  # counted after a collection: still counted once
    later = {(a[ATTR_DECISION], a[ATTR_STATUS]): p.value for a, p in sdk.points(METRIC_REQUESTS)}
    assert later == {("allow", 200): 18_003, ("deny", 403): 6_001}
    ((_, scanned),) = sdk.points(METRIC_BYTES)
    assert scanned.value == 24_004 * 10
