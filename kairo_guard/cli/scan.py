"""``kairo-guard scan``: check every JSONL record of a file against a sink.

Exit 0 when every record may pass, 1 when any is refused, 2 for bad usage (an unknown
sink among them) or unreadable input.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson

from kairo_guard.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VIOLATION,
    Exit,
    handle_errors,
    open_guard,
    report_option,
)
from kairo_guard.cli.records import (
    SUMMARY_VIOLATIONS,
    atomic_output,
    open_input,
    progress,
    scan_stream,
)
from kairo_guard.core.exceptions import ConfigError
from kairo_guard.core.report import CheckReport
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import Mode, SinkKind

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

_KINDS = ", ".join(
    k.value + (":TENANT" if k is SinkKind.TENANT_FINE_TUNE else "") for k in SinkKind
)


@click.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--sink",
    "sink_name",
    required=True,
    metavar="NAME",
    help="A sink from the config, or a kind (as for --kind).",
)
@click.option(
    "--kind",
    metavar="KIND",
    help=f"Kind of a sink that is not in the config: {_KINDS}.",
)
@click.option(
    "--tenant",
    metavar="TENANT",
    help="Tenant of a tenant-fine-tune sink named by its kind.",
)
@click.option(
    "--mode", type=click.Choice([m.value for m in Mode]), help="Override the sink's mode."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the records that may pass (enforce: only if all pass).",
)
@report_option("Write the report as JSON.")
@click.pass_context
@handle_errors
def scan(
    ctx: click.Context,
    input_path: Path,
    sink_name: str,
    kind: str | None,
    tenant: str | None,
    mode: str | None,
    out: Path | None,
    report_path: Path | None,
) -> None:
    """Check every JSONL record of IN against a sink; exit 1 if any is refused."""
    guard = open_guard(ctx)
    run = guard.checks.start(resolve_scan_sink(guard, sink_name, kind, tenant), mode=mode)
    with (
        open_input(input_path) as stream,
        atomic_output(out) as (fh, commit),
        progress(stream, "scanning") as bar,
    ):
        report = scan_stream(run, stream, fh, guard.settings.limits.max_record_bytes, bar)
        commit[0] = report.ok or run.mode is not Mode.ENFORCE
    if report_path is not None:
        report_path.write_bytes(
            orjson.dumps(report.to_dict(line_numbers=True), option=orjson.OPT_INDENT_2)
        )
    _summary(report, input_path)
    if out is not None and not commit[0]:
        click.echo(f"  {out} not written: enforce mode refuses the whole batch", err=True)
    raise Exit(EXIT_OK if report.ok else EXIT_VIOLATION)


def resolve_scan_sink(guard: Guard, name: str, kind: str | None, tenant: str | None) -> Sink:
    """Return the sink ``--sink/--kind/--tenant`` name, as the library resolves it.

    A configured name, a kind string, or any name with ``--kind``: the same three ways
    ``guard.check(sink=...)`` accepts. ``--tenant`` belongs to a kind; a configured
    sink already has its tenant in the config.

    Raises:
        Exit: code 2, saying what to give instead.
    """
    configured = guard.settings.sinks.get(name)
    if configured is not None and kind is None and tenant is not None:
        raise Exit(
            EXIT_USAGE,
            f"error: sink {name!r} is configured as {configured.label}: "
            "--tenant applies only to a sink named by its kind",
        )
    try:
        sink: Sink = guard.resolve_sink(name, kind=kind, tenant=tenant)
    except ConfigError as exc:
        if kind is None and configured is None and not _names_a_kind(name):
            raise Exit(
                EXIT_USAGE,
                f"error: unknown sink {name!r}: not in the config and not a kind; "
                f"give --kind KIND [--tenant T] (kinds: {_KINDS}) "
                f"or declare [sinks.{name}] in kairo-guard.toml",
            ) from exc
        raise Exit(EXIT_USAGE, f"error: sink {name!r}: {exc}") from exc
    return sink


def _names_a_kind(name: str) -> bool:
    # only to choose the message: the library alone decides what a kind string means
    return name.partition(":")[0] in {k.value for k in SinkKind}


def _summary(report: CheckReport, source: Path) -> None:
    echo = click.echo
    if report.total == 0:
        echo(f"{source}: no records (empty input); nothing reached sink {report.sink!r}")
        return
    echo(f"scan {source} -> sink {report.sink!r} ({report.kind}, mode {report.mode.value})")
    echo(f"  records {report.total:>10,}")
    echo(f"  allowed {report.allowed:>10,}")
    echo(f"  blocked {report.blocked:>10,}")
    echo("  by rule:")
    for rule, count in sorted(report.by_rule.items(), key=lambda kv: (-kv[1], kv[0])):
        echo(f"    {rule:<44} {count:>10,}")
    for v in report.violations[:SUMMARY_VIOLATIONS]:
        echo(f"  line {v.index + 1}: {v.rule}: {v.reason}")
    more = report.blocked - min(report.blocked, SUMMARY_VIOLATIONS)
    if more:
        echo(f"  ... and {more:,} more refused records (see --report)")
