"""``kairo-guard label``: seal existing JSONL records (a backfill).

Exit 0 when every record was sealed, 1 when any was refused (already sealed: labels
are sticky; operator data that is a tenant's text), 2 for bad usage or an unreadable
line; the sealed records are written either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

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
from kairo_guard.cli.records import SUMMARY_VIOLATIONS, atomic_output, open_input
from kairo_guard.core.content import sealed_line
from kairo_guard.core.exceptions import ContentError, ContentRefused
from kairo_guard.core.jsonl import BadLine, Line, iter_lines, parse_line
from kairo_guard.core.types import SEAL_FIELD, DataClass, validate_tenant

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

_MINTED_ELSEWHERE = {
    DataClass.ANONYMIZED_TELEMETRY: "anonymized_telemetry is minted only by the telemetry "
    "aggregator (aggregated over enough tenants), never by labelling records",
}


@click.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--tenant", help="Tenant the records belong to (customer content, usage telemetry).")
@click.option(
    "--class",
    "data_class",
    required=True,
    type=click.Choice([c.value for c in DataClass]),
    help="Data class of the records.",
)
@click.option(
    "--source", default="backfill", show_default=True, help="Where the records came from."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the sealed records.",
)
@report_option("Write a JSON report (refused lines with rule and reason).")
@click.pass_context
@handle_errors
def label(
    ctx: click.Context,
    input_path: Path,
    tenant: str | None,
    data_class: str,
    source: str,
    out: Path,
    report_path: Path | None,
) -> None:
    """Seal existing JSONL records of IN (a backfill) and write them to OUT.

    Records are written in canonical form with the seal as last member. Customer content
    is also fingerprinted as the tenant's. ``operator_public`` (no --tenant) is vouched
    for only if its text overlaps no tenant's content.

    Exit 1 if a record was refused (already sealed: labels are sticky; operator data
    that is a tenant's text), 2 if a line is unreadable; sealed records are written
    either way.
    """
    cls = DataClass(data_class)
    _check_class_and_tenant(cls, tenant)
    guard = open_guard(ctx)
    tally = _Tally()
    indexed_before = guard.net.indexed  # sealing customer content indexes it
    with open_input(input_path) as stream, atomic_output(out) as (fh, commit):
        for item in iter_lines(stream, guard.settings.limits.max_record_bytes):
            if isinstance(item, Line):
                problem = _label_line(guard, item, fh, tenant=tenant, cls=cls, source=source)
                tally.count(item.number, problem)
            else:
                number, bad = item
                tally.count(number, (bad.rule, bad.reason))
        commit[0] = True
    tally.indexed = guard.net.indexed - indexed_before
    if report_path is not None:
        doc = {
            "input": str(input_path),
            "out": str(out),
            "class": cls.value,
            "tenant": guard.keys.pseudonym(tenant) if tenant else None,
            **tally.to_dict(),
        }
        report_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    _summary(tally, input_path, out, f"{cls}{f' of {tenant}' if tenant else ''}")
    unreadable = any(r["rule"].startswith("input.") for r in tally.refusals)
    raise Exit(EXIT_USAGE if unreadable else EXIT_VIOLATION if tally.refusals else EXIT_OK)


def _check_class_and_tenant(cls: DataClass, tenant: str | None) -> None:
    if cls in _MINTED_ELSEWHERE:
        raise Exit(EXIT_USAGE, f"error: cannot label as {cls}: {_MINTED_ELSEWHERE[cls]}")
    if cls.tenant_bound:
        if not tenant:
            raise Exit(EXIT_USAGE, f"error: --tenant is required for {cls}")
        validate_tenant(tenant)
    elif tenant:
        raise Exit(EXIT_USAGE, f"error: {cls} belongs to no tenant; drop --tenant")


@dataclass
class _Tally:
    """What a label run did: records sealed, refused (with line and why), fingerprinted."""

    sealed: int = 0
    indexed: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)

    def count(self, number: int, problem: tuple[str, str] | None) -> None:
        if problem is None:
            self.sealed += 1
        else:
            self.refusals.append({"line": number, "rule": problem[0], "reason": problem[1]})

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprints_indexed": self.indexed,
            "total": self.sealed + len(self.refusals),
            "sealed": self.sealed,
            "refused": len(self.refusals),
            "refusals": self.refusals,
        }


def _summary(tally: _Tally, input_path: Path, out: Path, what: str) -> None:
    if tally.sealed + len(tally.refusals) == 0:
        click.echo(f"{input_path}: no records (empty input); wrote an empty {out}")
    else:
        click.echo(
            f"label {input_path} -> {out}: sealed {tally.sealed:,} as {what}, "
            f"refused {len(tally.refusals):,}"
        )
    for r in tally.refusals[:SUMMARY_VIOLATIONS]:
        click.echo(f"  line {r['line']}: {r['rule']}: {r['reason']}", err=True)


def _label_line(
    guard: Guard,
    line: Line,
    fh: BinaryIO | None,
    *,
    tenant: str | None,
    cls: DataClass,
    source: str,
) -> tuple[str, str] | None:
    value = parse_line(line.raw, exact_numbers=True)
    if isinstance(value, BadLine):
        return value.rule, value.reason
    if type(value) is not dict:
        return "input.not-an-object", "a record must be a JSON object to carry a seal"
    if SEAL_FIELD in value:
        return "label.already-sealed", "record already carries a seal; labels are sticky"
    try:
        if cls is DataClass.OPERATOR_PUBLIC:
            seal = guard.seal_operator_data(value, source=source)
        elif tenant is not None:
            seal = guard.seal(value, tenant=tenant, data_class=cls, source=source)
        else:  # the options were checked before; a record is never sealed without a tenant
            return "label.refused", f"{cls} needs a tenant"
    except ContentRefused as exc:
        return exc.rule, exc.reason
    except (ValueError, ContentError) as exc:
        return "label.refused", str(exc)
    if fh is not None:
        fh.write(sealed_line(value, seal))
    return None
