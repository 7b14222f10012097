"""Test helpers for the OpenTelemetry tests: real SDK providers and an OTLP receiver.

The receiver is a real Starlette app under a real uvicorn on loopback that decodes the
OTLP/HTTP protobuf body with ``opentelemetry-proto``, as a collector would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kg_testing import running_server
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Sdk:
    """A tracer provider exporting to memory and a meter provider read in memory."""

    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    tracer_provider: TracerProvider = field(default_factory=TracerProvider)
    meter_provider: MeterProvider = field(init=False)

    def __post_init__(self) -> None:
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self, name: str | None = None) -> list[Any]:
        """Finished spans, optionally only those named ``name``."""
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def wait_for(self, name: str, count: int, timeout: float = 5.0) -> list[Any]:
        """The spans named ``name`` once there are ``count`` of them (servers end a
        request's span just after the response went out)."""
        deadline = time.monotonic() + timeout
        while len(found := self.finished(name)) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return found

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, point)`` of every data point of ``metric``."""
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        found.extend((dict(p.attributes or {}), p) for p in m.data.data_points)
        return found


@dataclass
class OtlpReceiver:
    """What the loopback receiver got: decoded export requests."""

    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    log_requests: list[ExportLogsServiceRequest] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    """Every request body received (traces and logs), as sent."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    logs_url: str = ""
    """Where the receiver takes OTLP/HTTP logs (``/v1/logs``)."""

    def spans(self) -> list[Any]:
        """Every protobuf span received, in order."""
        with self.lock:
            return [
                span
                for req in self.requests
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]

    def log_records(self) -> list[Any]:
        """Every protobuf log record received, in order."""
        with self.lock:
            return [
                record
                for req in self.log_requests
                for rl in req.resource_logs
                for sl in rl.scope_logs
                for record in sl.log_records
            ]


def attributes(items: Any) -> dict[str, Any]:
    """A protobuf ``KeyValue`` list as a dict of plain values (arrays as lists)."""
    out: dict[str, Any] = {}
    for kv in items:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            out[kv.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            out[kv.key] = getattr(value, kind) if kind else None
    return out


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, OtlpReceiver]]:
    """Run the receiver; yield its ``/v1/traces`` URL and what it receives (logs go
    to ``received.logs_url``)."""
    got = OtlpReceiver()

    def endpoint(message_type: Any, response_type: Any, into: list[Any]) -> Any:
        """A route that decodes one OTLP/HTTP export request into ``into``."""

        async def receive(request: Request) -> Response:
            body = await request.body()
            message = message_type()
            message.ParseFromString(body)
            with got.lock:
                got.raw.append(body)
                into.append(message)
            return Response(
                response_type().SerializeToString(), media_type="application/x-protobuf"
            )

        return receive

    traces = endpoint(ExportTraceServiceRequest, ExportTraceServiceResponse, got.requests)
    logs = endpoint(ExportLogsServiceRequest, ExportLogsServiceResponse, got.log_requests)
    app = Starlette(
        routes=[
            Route("/v1/traces", traces, methods=["POST"]),
            Route("/v1/logs", logs, methods=["POST"]),
        ]
    )
    with running_server(app) as url:
        got.logs_url = f"{url}/v1/logs"
        yield f"{url}/v1/traces", got
