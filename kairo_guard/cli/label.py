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
from kairo_guard.core.exceptions import ContentError, ContentRefused, SealError
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
    shard = _Shard(guard, source, tally) if cls is DataClass.OPERATOR_PUBLIC else None
    with open_input(input_path) as stream, atomic_output(out) as (fh, commit):
        for item in iter_lines(stream, guard.settings.limits.max_record_bytes):
            if not isinstance(item, Line):
                number, bad = item
                tally.count(number, (bad.rule, bad.reason))
            elif shard is not None:
                shard.add(item, fh)  # counted once vetted (or refused at once)
            else:
                problem = _label_line(guard, item, fh, tenant=tenant, cls=cls, source=source)
                tally.count(item.number, problem)
        if shard is not None:
            shard.flush(fh)
        commit[0] = True
    tally.refusals.sort(key=lambda r: r["line"])
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


_NOT_AN_OBJECT = "a record must be a JSON object to carry a seal"
_STICKY = "record already carries a seal; labels are sticky"
SHARD_RECORDS = 10_000
"""Operator records vetted and signed together, as one shard."""


class _Shard:
    """Operator records on their way into a shard: vetted and written in order, a
    shard of at most :data:`SHARD_RECORDS` at a time."""

    def __init__(self, guard: Guard, source: str, tally: _Tally) -> None:
        self._guard, self._source, self._tally = guard, source, tally
        self._pending: list[tuple[int, dict[str, Any]]] = []

    def add(self, line: Line, fh: BinaryIO | None) -> None:
        """Take a line: refused at once (unreadable, sealed as something else) or
        pending until its shard is vetted."""
        value = parse_line(line.raw, exact_numbers=True)
        if isinstance(value, BadLine):
            self._tally.count(line.number, (value.rule, value.reason))
        elif type(value) is not dict:
            self._tally.count(line.number, ("input.not-an-object", _NOT_AN_OBJECT))
        elif SEAL_FIELD in value and not self._revetting(value.pop(SEAL_FIELD)):
            self._tally.count(line.number, ("label.already-sealed", _STICKY))
        else:
            self._pending.append((line.number, value))
            if len(self._pending) >= SHARD_RECORDS:
                self.flush(fh)

    def _revetting(self, seal: object) -> bool:
        # operator data vetted before (another policy, another shard) may be vetted again
        try:
            label = self._guard.codec.open(seal)
        except SealError:
            return False
        return label.data_class is DataClass.OPERATOR_PUBLIC

    def flush(self, fh: BinaryIO | None) -> None:
        """Vet the pending records as one shard; write the sealed ones in order."""
        if not self._pending:
            return
        values = [v for _, v in self._pending]
        try:
            outcomes: list[Any] = self._guard.vetting.vet(values, source=self._source)
        except ContentRefused as exc:  # the whole batch: a lagging or stale index
            outcomes = [exc] * len(values)
        for (number, value), outcome in zip(self._pending, outcomes, strict=True):
            if isinstance(outcome, str):
                if fh is not None:
                    fh.write(sealed_line(value, outcome))
                self._tally.count(number, None)
            elif isinstance(outcome, ContentRefused):
                self._tally.count(number, (outcome.rule, outcome.reason))
            else:
                self._tally.count(number, ("label.refused", str(outcome)))
        self._pending.clear()


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
        return "input.not-an-object", _NOT_AN_OBJECT
    if SEAL_FIELD in value:
        return "label.already-sealed", _STICKY
    try:
        if tenant is not None:
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
