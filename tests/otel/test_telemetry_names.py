"""Telemetry names are a contract with dashboards and alerts: the layout change must
not rename them."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from kairo_guard.core.keys import KeyRing
from kairo_guard.ingest.baggage import BaggageResolver
from kairo_guard.ingest.resolvers import RequestInfo
from kairo_guard.otel.baggage import TenantTokenCodec
from kairo_guard.otel.instrumentation import GuardTelemetry

pytestmark = pytest.mark.storeless  # opens no state store: runs once, in the main pass

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736


def test_when_baggage_is_ignored_then_metric_and_span_keep_their_documented_names() -> None:
    ring = KeyRing.generate()
    reader = InMemoryMetricReader()
    provider = TracerProvider()
    telemetry = GuardTelemetry(provider, MeterProvider(metric_readers=[reader]))
    resolver = BaggageResolver(TenantTokenCodec(ring), ["127.0.0.1/32"], telemetry=telemetry)
    token = TenantTokenCodec(ring).issue("acme", TRACE)
    headers = [
        (b"traceparent", f"00-{TRACE:032x}-00f067aa0ba902b7-01".encode()),
        (b"baggage", f"kairo.tenant={token}".encode()),
    ]
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        tenant = asyncio.run(resolver.resolve(RequestInfo("10.9.9.9", "/x", headers)))
    assert tenant is None
    assert isinstance(span, ReadableSpan)
    assert span.attributes is not None
    assert span.attributes.get("kairo_guard.baggage") == "untrusted-peer"
    data = reader.get_metrics_data()
    assert data is not None
    names = {
        metric.name
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert "kairo_guard.baggage.rejected" in names
