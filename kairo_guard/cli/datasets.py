"""``kairo-guard dataset build``: one tenant's sealed records in, a signed dataset out.

Exit 0 when the dataset was written; 1 when any record was refused or the tenant has
no active fine-tune agreement (nothing is written; every refusal is printed with its
line, rule and reason); 2 for bad usage or unreadable input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from kairo_guard.core.exceptions import IsolationViolation
from kairo_guard.core.jsonl import Line, iter_lines
from kairo_guard.core.report import CheckReport
from kairo_guard.core.types import validate_tenant
from kairo_guard.tenancy.manifest import DatasetError

_USAGE_RULES = frozenset({"dataset.exists", "dataset.empty"})
_SHOWN = 20


@click.group()
def dataset() -> None:
    """Tenant fine-tune datasets with signed manifests."""


@dataset.command("build")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--tenant", required=True, help="The tenant whose fine-tune set this is.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="New (or empty) directory for records.jsonl and manifest.json.",
)
@report_option("Write the decisions as JSON (scan --report format, plus the dataset).")
@click.pass_context
@handle_errors
def dataset_build(
    ctx: click.Context, input_path: Path, tenant: str, out: Path, report_path: Path | None
) -> None:
    """Build TENANT's dataset from sealed JSONL records IN (exit 1 if any is refused)."""
    validate_tenant(tenant)
    if not input_path.is_file():
        raise Exit(EXIT_USAGE, f"error: cannot read {input_path}")
    guard = open_guard(ctx)
    builder = guard.tenant_dataset(tenant)
    with builder, input_path.open("rb") as stream:
        for item in iter_lines(stream, guard.settings.limits.max_record_bytes):
            if isinstance(item, Line):
                builder.add_line(item.raw, position=item.number - 1)
            else:
                number, bad = item
                builder.refuse(bad.rule, bad.reason, bad.digest, number - 1)
        report = builder.report()
        try:
            manifest = builder.write(out)
        except IsolationViolation:
            _write_report(report_path, report, None)
            _print_refusals(report)
            raise Exit(EXIT_VIOLATION) from None
        except DatasetError as exc:
            _write_report(report_path, report, None)
            code = EXIT_USAGE if exc.rule in _USAGE_RULES else EXIT_VIOLATION
            raise Exit(code, f"refused: {exc}") from None
    _write_report(report_path, report, {"id": manifest.dataset_id, "path": str(out)})
    click.echo(
        f"dataset {manifest.dataset_id} for {tenant}: {manifest.record_count:,} records -> {out} "
        f"(merkle root {manifest.merkle_root[:16]}..., agreement {manifest.agreement_id})"
    )
    raise Exit(EXIT_OK)


def _print_refusals(report: CheckReport) -> None:
    click.echo(
        f"refused: {report.blocked:,} of {report.total:,} records; no dataset written", err=True
    )
    for violation in report.violations[:_SHOWN]:
        click.echo(f"  line {violation.index + 1}: {violation.rule}: {violation.reason}", err=True)
    hidden = report.blocked - min(len(report.violations), _SHOWN)
    if hidden > 0:
        click.echo(f"  ... and {hidden:,} more (see --report)", err=True)


def _write_report(path: Path | None, report: CheckReport, written: dict[str, Any] | None) -> None:
    if path is None:
        return
    doc = {**report.to_dict(line_numbers=True), "dataset": written}
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
