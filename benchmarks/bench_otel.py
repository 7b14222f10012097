"""Cost of OpenTelemetry tracing in the guard: per request and per check, on vs off.

* ``request``: ``GuardMiddleware`` over a tiny plain ASGI app, called in-process (no
  network, so the overhead is visible), with a small JSON body: tenant resolution
  (the trusted-proxy header), body digest, fingerprint indexing, sealing, audit. Two
  guards differ only in telemetry: **on** is the real SDK (``TracerProvider`` with a
  ``BatchSpanProcessor`` into an exporter that counts and drops, and a
  ``MeterProvider`` with an in-memory reader); **off** is the API alone (no SDK: what
  a library user without OpenTelemetry gets). The sides alternate in blocks; the
  table shows medians of the per-request time, the difference, and the spans the
  guard made per request.
* ``check``: ``guard.check`` of N sealed operator records at a shared sink (the PII
  gate off), on vs off, many short checks per block: the added time per check (a
  fixed cost: no OpenTelemetry call is made per record) and per record.

Targets (the issue): <= 30 us added per request, <= 1 span per request made by us.

Run: ``.venv/bin/python benchmarks/bench_otel.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import machine_info
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from kairo_guard import Guard, KeyRing, make_sink
from kairo_guard.middleware import GuardMiddleware
from kairo_guard.resolvers import TrustedProxyResolver
from kairo_guard.testing import make_guard, sealed_record

TARGET_US = 30.0
TARGET_SPANS = 1.0
BODY = b'{"title": "q3", "text": "short note from a tenant"}'


class CountingExporter(SpanExporter):
    """Counts spans and drops them (an exporter with no network cost)."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _middleware(guard: Guard) -> GuardMiddleware:
    resolver = TrustedProxyResolver(["127.0.0.1/32"])
    return GuardMiddleware(_app, guard=guard, resolver=resolver)  # type: ignore[arg-type]


async def _requests(mw: GuardMiddleware, n: int) -> float:
    """Seconds for ``n`` in-process requests."""
    scope_base = {
        "type": "http",
        "method": "POST",
        "path": "/documents",
        "client": ("127.0.0.1", 5000),
        "headers": [
            (b"x-kairo-tenant", b"acme"),
            (b"content-length", str(len(BODY)).encode()),
            (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ],
    }
    message = {"type": "http.request", "body": BODY, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(msg: MutableMapping[str, Any]) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        await mw(dict(scope_base), receive, send)
    return time.perf_counter() - started


def _traced_guard(
    home: Path, ring: KeyRing, processor: str
) -> tuple[Guard, CountingExporter, TracerProvider]:
    """A guard on a real SDK whose spans go to a counting exporter through a
    ``BatchSpanProcessor`` (``batch``) or a ``SimpleSpanProcessor`` (``simple``)."""
    exporter = CountingExporter()
    provider = TracerProvider()
    span_processor = BatchSpanProcessor if processor == "batch" else SimpleSpanProcessor
    provider.add_span_processor(span_processor(exporter))
    guard = make_guard(
        home / processor,
        ring=ring,
        pii_gate=False,
        tracer_provider=provider,
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
    )
    return guard, exporter, provider


def _bare_span_us(provider: TracerProvider, n: int) -> float:
    """The SDK's own floor: one ``start_span`` + ``end`` on the same provider, in us."""
    tracer = provider.get_tracer("floor")
    started = time.perf_counter()
    for _ in range(n):
        tracer.start_span("floor").end()
    return (time.perf_counter() - started) / n * 1e6


def bench_requests(home: Path, n: int, reps: int) -> dict[str, Any]:
    """Per-request time with tracing off, on (simple) and on (batch), rotating the
    order; the SDK's bare span on each provider; spans per request."""
    ring = KeyRing.generate()
    off = make_guard(home / "off", ring=ring, pii_gate=False)
    traced = {p: _traced_guard(home, ring, p) for p in ("simple", "batch")}
    sides = {"off": _middleware(off), **{p: _middleware(g) for p, (g, _, _) in traced.items()}}
    times: dict[str, list[float]] = {side: [] for side in [*sides, "floor-simple", "floor-batch"]}
    requests = dict.fromkeys(sides, 200)
    try:
        for mw in sides.values():
            asyncio.run(_requests(mw, 200))  # warm-up
        order = list(sides)
        for rep in range(reps):
            for side in order[rep % 3 :] + order[: rep % 3]:
                times[side].append(asyncio.run(_requests(sides[side], n)) / n * 1e6)
                requests[side] += n
            for p, (_, _, provider) in traced.items():
                times[f"floor-{p}"].append(_bare_span_us(provider, n))
        for _, _, provider in traced.values():
            provider.force_flush()
    finally:
        off.close()
        for guard, _, provider in traced.values():
            guard.close()
            provider.shutdown()
    med = {side: statistics.median(values) for side, values in times.items()}
    out: dict[str, Any] = {"requests_per_rep": n, "us_per_request_off": round(med["off"], 1)}
    for p, (_, exporter, _) in traced.items():
        paired = [a - b for a, b in zip(times[p], times["off"], strict=True)]
        out[p] = {
            "us_per_request": round(med[p], 1),
            "us_added": round(med[p] - med["off"], 1),
            "us_added_paired": round(statistics.median(paired), 1),
            "us_bare_sdk_span": round(med[f"floor-{p}"], 1),
            # the floor's own spans are not the guard's
            "spans_per_request": round((exporter.count - reps * n) / requests[p], 3),
        }
    batch = out["batch"]
    out["pass"] = batch["us_added"] <= TARGET_US and batch["spans_per_request"] <= TARGET_SPANS
    out["all_us"] = {side: [round(t, 1) for t in times[side]] for side in sides}
    return out


def bench_check(home: Path, records: int, checks: int, reps: int) -> dict[str, Any]:
    """Time of ``guard.check`` of ``records`` records, tracing on vs off, in blocks of
    ``checks`` checks (short checks make the fixed cost per check visible)."""
    ring = KeyRing.generate()
    off = make_guard(home / "check-off", ring=ring, pii_gate=False)
    on, exporter, provider = _traced_guard(home / "check", ring, "batch")
    sink = make_sink("router", "shared-training")
    data = {
        side: [
            sealed_record(g, {"features": [i, i % 7], "route": "small"},
                          data_class="operator_public")
            for i in range(records)
        ]
        for side, g in (("on", on), ("off", off))
    }  # fmt: skip
    guards = {"on": on, "off": off}
    times: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for rep in range(reps):
            for side in ("on", "off") if rep % 2 == 0 else ("off", "on"):
                guard, rows = guards[side], data[side]
                started = time.perf_counter()
                for _ in range(checks):
                    guard.check(rows, sink=sink)
                times[side].append((time.perf_counter() - started) / checks * 1e6)
        provider.force_flush()
    finally:
        on.close()
        off.close()
        provider.shutdown()
    med = {side: statistics.median(values) for side, values in times.items()}
    added = med["on"] - med["off"]
    return {
        "records": records,
        "us_per_check_on": round(med["on"], 1),
        "us_per_check_off": round(med["off"], 1),
        "us_added_per_check": round(added, 1),
        "us_added_per_record": round(added / records, 3),
        "spans_per_check": round(exporter.count / (reps * checks), 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=500, help="requests per block")
    p.add_argument("--reps", type=int, default=21, help="blocks per side")
    p.add_argument("--records", type=int, default=100, help="records per check")
    p.add_argument("--checks", type=int, default=200, help="checks per block")
    p.add_argument("--check-reps", type=int, default=11, help="blocks per side")
    p.add_argument("--cpu", type=int, help="CPU to pin to (default: the last allowed one)")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--json", action="store_true", help="JSON on stdout (the table on stderr)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = p.parse_args(argv)
    pinned = None
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        pinned = sorted(os.sched_getaffinity(0))[-1] if args.cpu is None else args.cpu
        os.sched_setaffinity(0, {pinned})
    say = sys.stderr if args.json else sys.stdout
    with tempfile.TemporaryDirectory(prefix="kg-bench-otel-") as tmp:
        request = bench_requests(Path(tmp), args.requests, args.reps)
        check = bench_check(Path(tmp), args.records, args.checks, args.check_reps)
    source_hash, _ = machine_info.library_state()
    lines = [
        f"kairo_guard sources {source_hash}, pinned to CPU {pinned}",
        f"request, tracing off: {request['us_per_request_off']} us",
    ]
    for processor in ("batch", "simple"):
        r = request[processor]
        lines.append(
            f"request, tracing on ({processor} span processor): {r['us_per_request']} us -> "
            f"+{r['us_added']} us/request (paired blocks: +{r['us_added_paired']} us), "
            f"{r['spans_per_request']} spans/request; the SDK's bare span: "
            f"{r['us_bare_sdk_span']} us"
        )
    lines.append(
        f"target: <= {TARGET_US} us and <= {TARGET_SPANS} span per request (batch): "
        f"{'PASS' if request['pass'] else 'FAIL'}"
    )
    lines.append(
        f"check of {check['records']:,} records: {check['us_per_check_off']} us off, "
        f"{check['us_per_check_on']} us on -> +{check['us_added_per_check']} us/check "
        f"({check['us_added_per_record']} us/record), {check['spans_per_check']} spans/check"
    )
    say.write("\n".join(lines) + "\n")
    if args.json:
        doc = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": {**machine_info.machine(), "pinned_cpu": pinned},
            "sources": source_hash,
            "request": request,
            "check": check,
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 1 if args.strict and not request["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
