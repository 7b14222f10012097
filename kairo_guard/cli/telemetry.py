"""``kairo-guard telemetry aggregate``: raw usage events in, sealed statistics out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from kairo_guard.anonymize.aggregator import (
    DEFAULT_EPSILON,
    AggregationReport,
    TelemetryAggregator,
)
from kairo_guard.cli.common import EXIT_OK, EXIT_USAGE, Exit, handle_errors, open_guard
from kairo_guard.cli.records import atomic_output, progress
from kairo_guard.config import parse_duration
from kairo_guard.core.content import sealed_line
from kairo_guard.core.jsonl import BadLine, Line, iter_lines, parse_line
from kairo_guard.detect.pii.check import MessageScrubber
from kairo_guard.guard import Guard


@click.group()
def telemetry() -> None:
    """Anonymized telemetry: the one way customer-derived data reaches shared models."""


@telemetry.command("aggregate")
@click.argument("events_path", metavar="EVENTS", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--k", "k", type=int, help="Minimum distinct tenants per group (default 10).")
@click.option("--window", help="Time window, e.g. 1h, 15m, 1d (default 1h).")
@click.option(
    "--epsilon",
    type=click.FloatRange(min=0, min_open=True, max=100),
    help="Noise of each group's count and error count (default 1; smaller is noisier).",
)
@click.option(
    "--exact-counts",
    is_flag=True,
    help="Publish counts without noise (k - 1 sybil accounts can then read a tenant's).",
)
@click.option(
    "--keep-messages",
    is_flag=True,
    help="Publish error messages: scrubbed of PII, re-checked, and only those k tenants sent.",
)
@click.pass_context
@handle_errors
def telemetry_aggregate(
    ctx: click.Context,
    events_path: Path,
    out: Path,
    k: int | None,
    window: str | None,
    epsilon: float | None,
    exact_counts: bool,
    keep_messages: bool,
) -> None:
    """Aggregate raw usage EVENTS (JSONL) into k-anonymous sealed statistics."""
    guard = open_guard(ctx)
    noise = None if exact_counts else (epsilon or guard.settings.telemetry.epsilon)
    code = aggregate_file(
        guard, events_path, out, k=k, window=window, keep_messages=keep_messages, epsilon=noise
    )
    raise Exit(code)


def _events(path: Path, max_bytes: int, report: AggregationReport) -> Iterator[Any]:
    with path.open("rb") as stream, progress(stream, "aggregating") as bar:
        for item in iter_lines(stream, max_bytes):
            if isinstance(item, Line):
                if bar is not None:
                    bar.update(len(item.raw) + 1)
                value = parse_line(item.raw)
                if isinstance(value, BadLine):
                    report.events += 1
                    report.skip("malformed")
                    continue
                yield value
            else:
                report.events += 1
                report.skip("too-large")


def _scrubber(guard: Guard) -> MessageScrubber:
    from kairo_guard.detect.pii.gate import PiiGate

    pii = guard.settings.pii
    gate = PiiGate(
        entities=pii.entities, thresholds=pii.thresholds, allow_list=pii.allow_list, model=pii.model
    )
    return MessageScrubber(gate, guard.fingerprints)


def aggregate_file(
    guard: Guard,
    events: Path,
    out: Path,
    *,
    k: int | None,
    window: str | None,
    keep_messages: bool = False,
    epsilon: float | None = DEFAULT_EPSILON,
) -> int:
    """Run the aggregation of a JSONL file; print a summary; return the exit code."""
    if not events.is_file():
        click.echo(f"error: cannot read {events}", err=True)
        return EXIT_USAGE
    settings = guard.settings.telemetry
    aggregator = TelemetryAggregator(
        guard.telemetry_vetting,
        audit=guard.audit,
        pseudonym=guard.keys.pseudonym,
        tenants=guard.store.tenant_ids(),
        k=k if k is not None else settings.k,
        window_seconds=parse_duration(window or settings.window),
        dimensions=settings.dimensions,
        enumerations=settings.enumerations,
        fields=settings.fields,
        scrub=_scrubber(guard) if keep_messages else None,
        epsilon=epsilon,
    )
    report = AggregationReport()
    records = aggregator.aggregate(
        _events(events, guard.settings.limits.max_record_bytes, report), report
    )
    with atomic_output(out) as (fh, commit):
        for record in records:
            seal = record.pop("_kairo")
            fh.write(sealed_line(record, seal))  # type: ignore[union-attr]
        commit[0] = True
    click.echo(
        f"telemetry aggregate {events} -> {out}: {report.events:,} events, {report.used:,} used, "
        f"{sum(report.skipped.values()):,} skipped, {report.groups:,} groups, "
        f"{report.emitted:,} emitted, {report.suppressed_groups:,} suppressed (fewer than "
        f"{aggregator.k} tenants)"
    )
    for reason, count in sorted(report.skipped.items()):
        click.echo(f"  skipped for {reason}: {count:,}", err=True)
    for rule, count in sorted(report.refused.items()):
        click.echo(f"  refused at vetting ({rule}): {count:,}", err=True)
    return EXIT_OK
