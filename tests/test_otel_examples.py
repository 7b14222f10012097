"""examples/observability.py as a user runs it, exporting to an OTLP receiver on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
from otel_support import attributes, otlp_receiver

from kairo_guard import KeyRing
from kairo_guard.otel.names import (
    ATTR_DECISION,
    ATTR_SINK_KIND,
    ATTR_TENANT,
    CHECK_SPAN,
    REQUEST_SPAN,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "observability.py"


def test_observability_example_exports_one_trace_across_service_and_job(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    with otlp_receiver() as (endpoint, received):
        env = {
            "PATH": "/usr/bin:/bin",
            "KAIRO_GUARD_HOME": str(tmp_path / "state"),
            "KAIRO_GUARD_KEY": ring.to_env_value(),
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint.removesuffix("/v1/traces"),
        }
        result = subprocess.run(
            [sys.executable, str(EXAMPLE)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        summary = orjson.loads(result.stdout)
        spans = received.spans()
    assert summary["shared"]["blocked"] == 1
    assert summary["fine_tune"] == {"allowed": 1, "blocked": 0}
    trace_ids = {span.trace_id.hex() for span in spans}
    assert trace_ids == {summary["trace_id"]}
    names = [span.name for span in spans]
    assert names.count(REQUEST_SPAN) == 2  # the upload and the listing, in the service
    checks = [attributes(s.attributes) for s in spans if s.name == CHECK_SPAN]
    kinds = {c[ATTR_SINK_KIND]: c[ATTR_DECISION] for c in checks}
    assert kinds == {"shared-training": "block", "tenant-fine-tune": "allow"}
    requests = [attributes(s.attributes) for s in spans if s.name == REQUEST_SPAN]
    assert {r[ATTR_TENANT] for r in requests} == {ring.pseudonym("acme")}
    services = {
        kv.value.string_value
        for req in received.requests
        for rs in req.resource_spans
        for kv in rs.resource.attributes
        if kv.key == "service.name"
    }
    assert services == {"ingestion-service", "training-job"}
    raw = b"".join(received.raw)
    assert b"Leipzig" not in raw
    assert b"acme" not in raw
