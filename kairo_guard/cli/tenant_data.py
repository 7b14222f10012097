"""``kairo-guard retention ...``, ``erase`` and ``export``: a tenant's data over its life."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from kairo_guard.cli.common import (
    EXIT_USAGE,
    EXIT_VIOLATION,
    Exit,
    handle_errors,
    open_guard,
    report_option,
)
from kairo_guard.config import parse_duration
from kairo_guard.core.exceptions import AuditIntegrityError

_DAY = 86400


@click.group()
def retention() -> None:
    """Retention periods and the sweep that deletes expired data."""


@retention.command("sweep")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; delete nothing.")
@report_option("Also write the report as JSON here.")
@click.pass_context
@handle_errors
def retention_sweep(ctx: click.Context, dry_run: bool, report_path: Path | None) -> None:
    """Delete expired dataset records and provenance rows; report counts per tenant
    pseudonym and class."""
    report = open_guard(ctx).sweep_retention(dry_run=dry_run)
    doc = report.to_json()
    if report_path is not None:
        report_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"retention sweep: {verb} {report.total('dataset_records'):,} dataset record(s) in "
        f"{len(report.datasets)} dataset(s) and {report.total('provenance'):,} provenance row(s)"
    )
    for what, tenants in sorted(report.removed.items()):
        for pseudonym, classes in sorted(tenants.items()):
            for cls, count in sorted(classes.items()):
                click.echo(f"  {what:<16} {pseudonym:<28} {cls:<20} {count:,}")


@retention.command("set")
@click.option("--tenant", required=True, help="The tenant whose period this is.")
@click.option(
    "--class",
    "scope",
    required=True,
    help="customer_content, usage_telemetry, or agent_run (agent run logs).",
)
@click.argument("duration", required=False)
@click.option("--unset", is_flag=True, help="Remove the tenant's period (back to the default).")
@click.pass_context
@handle_errors
def retention_set(
    ctx: click.Context, tenant: str, scope: str, duration: str | None, unset: bool
) -> None:
    """Set TENANT's own retention period for a class, e.g. ``180d`` (new seals use it)."""
    if unset == (duration is not None):
        raise Exit(EXIT_USAGE, "error: give a DURATION (e.g. 180d) or --unset")
    seconds = None if duration is None else parse_duration(duration)
    open_guard(ctx).set_retention(tenant, scope, seconds)
    what = "removed" if seconds is None else f"set to {duration}"
    click.echo(f"retention of {scope} for {tenant} {what}")


@retention.command("show")
@click.pass_context
@handle_errors
def retention_show(ctx: click.Context) -> None:
    """Show the configured periods and every tenant's own ones."""
    guard = open_guard(ctx)
    policy = guard.retention
    click.echo(f"default  agent_run  {policy.agent_run // _DAY}d")
    for cls, seconds in sorted(policy.classes.items()):
        click.echo(f"default  {cls}  {_days(seconds)}")
    for tenant, scopes in sorted(policy.tenant_periods().items()):
        for scope, seconds in sorted(scopes.items()):
            click.echo(f"{tenant}  {scope}  {_days(seconds)}")


def _days(seconds: int) -> str:
    return f"{seconds // _DAY}d" if seconds % _DAY == 0 else f"{seconds}s"


@click.command("erase")
@click.option("--tenant", required=True, help="The tenant to erase.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--receipt",
    "receipt_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the signed erasure receipt here.",
)
@click.pass_context
@handle_errors
def erase(ctx: click.Context, tenant: str, yes: bool, receipt_path: Path | None) -> None:
    """Erase TENANT: its fingerprints, datasets, agreements, API keys and provenance rows
    go, its models are marked for deletion, its seals are refused from now on."""
    from kairo_guard.core.types import validate_tenant

    validate_tenant(tenant)
    if not yes:
        if not sys.stdin.isatty():
            raise Exit(EXIT_USAGE, "error: erasing cannot be undone: confirm with --yes")
        click.confirm(f"Erase every trace of tenant {tenant}? This cannot be undone", abort=True)
    receipt = open_guard(ctx).erase_tenant(tenant, receipt_path=receipt_path)
    counts = ", ".join(f"{n:,} {what}" for what, n in sorted(receipt.removed.items()))
    click.echo(
        f"erased {tenant} (pseudonym {receipt.tenant}): {counts}; "
        f"{receipt.models_marked_for_deletion} model(s) marked for deletion"
    )
    click.echo(f"receipt: {receipt.path}" + (f" and {receipt_path}" if receipt_path else ""))


@click.command("export")
@click.option("--tenant", required=True, help="The tenant whose data to export.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
    help="json: one document; csv: one file per section in the --out directory.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Output file (json; default stdout) or directory (csv, required).",
)
@click.pass_context
@handle_errors
def export(ctx: click.Context, tenant: str, fmt: str, out: Path | None) -> None:
    """Export TENANT's provenance records, agreements, datasets, models and decisions."""
    from kairo_guard.tenancy.export import write_csv, write_json

    if fmt == "csv" and out is None:
        raise Exit(
            EXIT_USAGE, "error: --format csv writes one file per section: give --out DIRECTORY"
        )
    try:
        doc = open_guard(ctx).export_tenant(tenant)
    except AuditIntegrityError as exc:
        raise Exit(EXIT_VIOLATION, f"error: the audit log failed verification: {exc}") from exc
    counts = ", ".join(f"{len(rows):,} {name}" for name, rows in doc["sections"].items())
    if fmt == "csv" and out is not None:
        write_csv(doc, out)
        click.echo(f"exported {tenant} to {out}/: {counts}", err=True)
    elif out is None:
        click.echo(write_json(doc).decode(), nl=False)
    else:
        out.write_bytes(write_json(doc))
        click.echo(f"exported {tenant} to {out}: {counts}", err=True)
