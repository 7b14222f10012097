"""Throughput of ScrubbingSpanExporter: spans per second one exporter thread scrubs.

Spans like those of an instrumented HTTP service (a route name, ``url.path``,
``url.full``, ``user_agent.original``, ``http.route``, a status code), exported through
``ScrubbingSpanExporter`` around an exporter that counts and drops, in batches of 512
(the ``BatchSpanProcessor`` default). Cases:

* ``repeating``: the same few attribute values again and again (judged once, then from
  the verdict cache);
* ``unique``: a new path and URL in every span (every such text is judged: the
  fingerprint index, then the PII gate when it is on).

Each case runs with the PII gate off and on. The question it answers: how many spans a
second can one exporter thread scrub before a ``BatchSpanProcessor``'s queue fills?

Run: ``.venv/bin/python benchmarks/bench_scrub.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import machine_info

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("tests/support", "examples")]
from kg_testing import make_guard
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from kairo_guard import KeyRing
from kairo_guard.otel.export import ScrubbingSpanExporter

BATCH = 512


class Counting(SpanExporter):
    """Counts spans and drops them."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def _spans(n: int, unique: bool, offset: int) -> list[ReadableSpan]:
    """``n`` finished spans of an HTTP service."""
    provider = TracerProvider()
    tracer = provider.get_tracer("svc")
    spans: list[ReadableSpan] = []
    for i in range(n):
        doc = offset + i if unique else 17
        span = tracer.start_span("GET /documents/{id}")
        span.set_attributes(
            {
                "http.request.method": "GET",
                "http.route": "/documents/{id}",
                "url.path": f"/documents/{doc}",
                "url.full": f"http://ingest.internal/documents/{doc}?page=2",
                "user_agent.original": "python-httpx/0.28.1",
                "http.response.status_code": 200,
            }
        )
        span.end()
        spans.append(span)  # type: ignore[arg-type]  # an SDK span is a ReadableSpan
    return spans


def bench(pii: bool, unique: bool, batches: int, reps: int) -> dict[str, Any]:
    """Spans per second scrubbed, and what was scrubbed."""
    with tempfile.TemporaryDirectory(prefix="kg-bench-scrub-") as tmp:
        guard = make_guard(Path(tmp) / "s", ring=KeyRing.generate(), pii_gate=pii)
        scrubbing = ScrubbingSpanExporter(Counting(), guard)
        scrubbing.export(_spans(8, unique=False, offset=0))  # warm-up (loads the model)
        rates: list[float] = []
        offset = 1_000_000
        for _ in range(reps):
            data = [_spans(BATCH, unique, offset + b * BATCH) for b in range(batches)]
            offset += batches * BATCH
            started = time.perf_counter()
            for batch in data:
                scrubbing.export(batch)
            rates.append(batches * BATCH / (time.perf_counter() - started))
        guard.close()
    rate = statistics.median(rates)
    return {
        "pii_gate": pii,
        "values": "unique" if unique else "repeating",
        "spans_per_s": round(rate),
        "ms_per_span": round(1000 / rate, 3),
        "scrubbed": dict(scrubbing.scrubbed),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batches", type=int, default=2, help="batches of 512 per repetition")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cpu", type=int, help="CPU to pin to (default: the last allowed one)")
    p.add_argument("--json", action="store_true", help="JSON on stdout (the table on stderr)")
    args = p.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1] if args.cpu is None else args.cpu
        os.sched_setaffinity(0, {cpu})
    rows = [
        bench(pii, unique, args.batches, args.reps)
        for pii in (False, True)
        for unique in (False, True)
    ]
    say = sys.stderr if args.json else sys.stdout
    say.write(f"ScrubbingSpanExporter, batches of {BATCH}; medians of {args.reps} repetitions\n")
    for r in rows:
        say.write(
            f"  PII gate {'on ' if r['pii_gate'] else 'off'}, {r['values']:9s} values: "
            f"{r['spans_per_s']:,} spans/s ({r['ms_per_span']} ms per span); scrubbed "
            f"{r['scrubbed'] or 'nothing'}\n"
        )
    if args.json:
        source_hash, _ = machine_info.library_state()
        doc = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine_info.machine(),
            "sources": source_hash,
            "rows": rows,
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
