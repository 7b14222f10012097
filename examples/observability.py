"""One trace across the ingestion service and a training job, exported over OTLP/HTTP.

Two parts, as two deployments would run them, each with its own OpenTelemetry SDK
provider (``service.name`` ``ingestion-service`` and ``training-job``), its own guard
and audit log, one shared state database and one key ring:

1. the **ingestion service** (``examples/ingestion_service.py``) behind GuardMiddleware,
   on a loopback port;
2. a **training job** that, inside its ``router-training-job`` span, uploads a document
   as tenant ``acme`` and lists the tenant's documents through the service (the httpx
   hook carries the trace, and the tenant's signed token, into the service), then checks
   the tenant's stored records at a shared training sink (refused: customer content)
   and at the tenant's fine-tune sink (allowed: the tenant holds an agreement).

Every span leaves through ``ScrubbingSpanExporter`` around the OTLP/HTTP exporter, so
the uploaded text never reaches the collector. The collector endpoint comes from
``OTEL_EXPORTER_OTLP_ENDPOINT`` (e.g. ``http://127.0.0.1:4318``). Prints a JSON
summary: the trace id and both reports.

    KAIRO_GUARD_HOME=DIR KAIRO_GUARD_KEY=... OTEL_EXPORTER_OTLP_ENDPOINT=... \\
        python examples/observability.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingestion_service import create_app
from loopback import running_server

from kairo_guard import Guard, KairoGuardError, make_sink
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.otel.baggage import httpx_event_hook
from kairo_guard.otel.export import ScrubbingSpanExporter

TENANT = "acme"
DOCUMENT = {
    "title": "Q3 plan",
    "text": "Acme will open a second plant in Leipzig in the third quarter and move the "
    "battery line there; the board approved a budget of 40 million euros.",
}


def guard_for(base: Path, part: str) -> tuple[Guard, TracerProvider]:
    """A guard with its own audit log and SDK provider, on the shared database."""
    provider = TracerProvider(resource=Resource.create({"service.name": part}))
    env = {**os.environ, "KAIRO_GUARD_DB_URL": f"sqlite:///{base / 'kairo-guard.db'}"}
    guard = Guard(home=base / part, env=env, tracer_provider=provider)
    # OTLPSpanExporter reads OTEL_EXPORTER_OTLP_ENDPOINT and posts to <endpoint>/v1/traces
    exporter = ScrubbingSpanExporter(OTLPSpanExporter(), guard)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return guard, provider


def training_job(
    guard: Guard, provider: TracerProvider, url: str, key: str, data: Path
) -> dict[str, Any]:
    """Feed the service, then check the tenant's stored records (in ``data``) at two
    sinks."""
    tracer = provider.get_tracer("training-job")
    with tracer.start_as_current_span("router-training-job") as job:
        hooks: dict[str, list[Any]] = {"request": [httpx_event_hook(guard)]}
        with httpx.Client(base_url=url, headers={"x-api-key": key}, event_hooks=hooks) as http:
            http.post("/documents", json=DOCUMENT).raise_for_status()
            listed = http.get("/documents").json()
        stored = (data / TENANT / "documents.jsonl").read_bytes()
        records = [orjson.loads(line) for line in stored.splitlines()]
        shared_sink = make_sink("router-train", "shared-training")
        tenant_sink = make_sink(f"ft-{TENANT}", "tenant-fine-tune", tenant=TENANT)
        shared = guard.check(records, sink=shared_sink, mode="filter")
        tuned = guard.check(records, sink=tenant_sink)
        return {
            "trace_id": f"{job.get_span_context().trace_id:032x}",
            "documents": len(listed),
            "shared": {
                "allowed": shared.allowed,
                "blocked": shared.blocked,
                "rules": sorted(shared.by_rule),
            },
            "fine_tune": {"allowed": tuned.allowed, "blocked": tuned.blocked},
        }


def main() -> int:
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        print("set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:4318)", file=sys.stderr)
        return 2
    base = Path(os.environ.get("KAIRO_GUARD_HOME", ".kairo-guard"))
    try:
        service_guard, service_provider = guard_for(base, "ingestion-service")
        job_guard, job_provider = guard_for(base, "training-job")
    except KairoGuardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        key = new_api_key(service_guard.store, TENANT)
        job_guard.grant_agreement(TENANT, reference="example fine-tune agreement")
        with running_server(create_app(service_guard, base / "data")) as url:
            summary = training_job(job_guard, job_provider, url, key, base / "data")
    finally:
        for guard, provider in ((service_guard, service_provider), (job_guard, job_provider)):
            provider.shutdown()  # flushes the batch to the collector
            guard.close()
    print(orjson.dumps(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
