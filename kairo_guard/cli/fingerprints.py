"""``kairo-guard fingerprints export|delete``: the index of tenants' content fingerprints."""

from __future__ import annotations

from pathlib import Path

import click

from kairo_guard.cli.common import handle_errors, open_guard


@click.group()
def fingerprints() -> None:
    """The fingerprint index of tenants' content (the laundering net)."""


@fingerprints.command("export")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--fp-rate",
    default=0.001,
    show_default=True,
    type=float,
    help="False-positive rate per fingerprint (a false positive blocks).",
)
@click.pass_context
@handle_errors
def fingerprints_export(ctx: click.Context, out: Path, fp_rate: float) -> None:
    """Write the index as a signed Bloom filter for checks away from the store."""
    count = open_guard(ctx).export_fingerprint_filter(out, fp_rate=fp_rate)
    click.echo(f"wrote {out}: {count:,} fingerprints, {fp_rate:g} false positives each")


@fingerprints.command("delete")
@click.argument("tenant")
@click.pass_context
@handle_errors
def fingerprints_delete(ctx: click.Context, tenant: str) -> None:
    """Forget every fingerprint of TENANT (its content no longer blocks shared sinks;
    audited)."""
    count = open_guard(ctx).fingerprints.delete(tenant)
    click.echo(f"deleted {count:,} fingerprints of {tenant}")
