"""``kairo-guard label`` and ``kairo-guard scan``: JSONL in, seals or decisions out."""

from __future__ import annotations

import gc
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import IO, Any, BinaryIO

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
from kairo_guard.core.content import sealed_line, split_sealed_line
from kairo_guard.core.exceptions import ContentError, ContentRefused
from kairo_guard.core.jsonl import (
    BadLine,
    Line,
    has_inexact_number,
    iter_line_batches,
    iter_lines,
    may_be_rounded,
    parse_line,
)
from kairo_guard.core.policy import Decision
from kairo_guard.core.report import CheckReport
from kairo_guard.core.types import SEAL_FIELD, DataClass, Mode, Outcome, validate_tenant
from kairo_guard.enforce.check import SinkCheck

_SORT = orjson.OPT_SORT_KEYS
_UNPARSED = BadLine("input.malformed-json", "malformed JSON", "")
_INEXACT = Decision(
    Outcome.BLOCK,
    "input.inexact-number",
    "an integer exceeds 64 bits: the seal cannot vouch for digits lost in parsing",
)
SUMMARY_VIOLATIONS = 5


@contextmanager
def atomic_output(path: Path | None) -> Iterator[tuple[BinaryIO | None, list[bool]]]:
    """Yield a file that replaces ``path`` only if the caller sets ``commit[0]``."""
    if path is None:
        yield None, [False]
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    commit = [False]
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            yield fh, commit
            fh.flush()
            os.fsync(fh.fileno())
        if commit[0]:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def progress(stream: BinaryIO, label: str) -> Iterator[Any]:
    """A progress bar over the input's bytes, on a terminal only."""
    size = os.fstat(stream.fileno()).st_size if stream.seekable() else 0
    if not (sys.stderr.isatty() and size):
        yield None
        return
    with click.progressbar(length=size, label=label, file=sys.stderr) as bar:
        yield bar


def _open_input(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise Exit(EXIT_USAGE, f"error: cannot read {path}: {exc.strerror}") from exc


# -- scan ----------------------------------------------------------------------------


def scan_stream(
    run: SinkCheck, stream: BinaryIO, out: IO[bytes] | None, max_bytes: int, bar: Any = None
) -> CheckReport:
    """Decide every line of ``stream``; write passing lines (as read) to ``out``.

    The hot path of ``scan``. A line in the canonical sealed form (what ``label`` and
    ``Guard.label_record`` write) is digested straight from its bytes, without a JSON
    parse; any other line is parsed and canonically re-encoded. Then one seal
    verification and a cached policy lookup.

    The objects alive when the scan starts (modules, the guard, caches) are frozen out
    of the garbage collector's view for its duration: a scan allocates steadily, and
    every full collection would otherwise walk them all again.
    """
    gc.freeze()
    try:
        return _scan_lines(run, stream, out, max_bytes, bar)
    finally:
        gc.unfreeze()


def _scan_lines(
    run: SinkCheck, stream: BinaryIO, out: IO[bytes] | None, max_bytes: int, bar: Any
) -> CheckReport:
    observe = run.mode is Mode.OBSERVE
    decide, allow, write = run.decide_parts, Outcome.ALLOW, None if out is None else out.write
    split, sha256 = split_sealed_line, hashlib.sha256
    done = scanned = 0
    number = -1
    for raw in chain.from_iterable(iter_line_batches(stream, max_bytes)):
        number += 1
        if isinstance(raw, BadLine):
            run.block_unreadable(raw.rule, raw.reason, raw.digest, number)
            continue
        scanned += len(raw) + 1
        parts = split(raw)
        if parts is not None:
            body, seal = parts
            digest = sha256(body).hexdigest()
            # the digest must be the seal's own, or the bytes are not canonical
            if seal.find(digest, 4, 120) < 0:
                parts = None
        if parts is not None:
            # the bytes are parsed only if a content check needs them (shared sinks)
            decision = decide(body, seal, digest, number, json_bytes=True)
        else:
            parsed = _decide_parsed(run, raw, number)
            if parsed is None:
                continue  # a blank line is not a record
            decision, canonical = parsed
            if canonical is not None and decision.outcome is allow and not observe:
                # write what was verified, not the line as read: a line with duplicate
                # keys parses to one value but may carry another to other readers
                # (observe mode changes nothing: it passes every line as it came)
                raw = canonical
        if write is not None and (decision.outcome is allow or observe):
            write(raw)
            write(b"\n")
        if bar is not None:
            done += len(raw) + 1
            if done > 1 << 22:
                bar.update(done)
                done = 0
    run.bytes_scanned += scanned
    return run.finish()


def _decide_parsed(run: SinkCheck, raw: bytes, number: int) -> tuple[Decision, bytes | None] | None:
    """Decide a line by parsing it; return the decision and, for a sealed object, its
    canonical line (None for a blank line)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if not raw.strip():
            return None
        bad = parse_line(raw)
        reason = bad if isinstance(bad, BadLine) else _UNPARSED
        return run.block_unreadable(reason.rule, reason.reason, reason.digest, number), None
    if type(value) is not dict:
        return run.decide_parts(value, None, None, number), None
    seal = value.pop(SEAL_FIELD, None)
    try:
        canonical: bytes | None = orjson.dumps(value, option=_SORT)
    except orjson.JSONEncodeError:
        canonical = None
    digest = None if canonical is None else hashlib.sha256(canonical).hexdigest()
    confirm = _exactness(raw, value) if may_be_rounded(value) else None
    decision = run.decide_parts(value, seal, digest, number, confirm)
    if canonical is None or not isinstance(seal, str):
        return decision, None
    return decision, sealed_line(value, seal).rstrip(b"\n")


def _exactness(raw: bytes, value: object) -> Callable[[], Decision | None]:
    return lambda: _INEXACT if has_inexact_number(raw, value) else None


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


@click.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--sink",
    "sink_name",
    required=True,
    help="Sink name from the config, or a kind: shared-training, shared-fine-tune, "
    "shared-eval, tenant-fine-tune:TENANT.",
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
    mode: str | None,
    out: Path | None,
    report_path: Path | None,
) -> None:
    """Check every JSONL record of IN against a sink; exit 1 if any is refused."""
    guard = open_guard(ctx)
    sink = _scan_sink(guard, sink_name)
    run = guard.start_check(sink, mode=mode)
    with (
        _open_input(input_path) as stream,
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


def _scan_sink(guard: Any, name: str) -> Any:
    from kairo_guard.core.exceptions import ConfigError
    from kairo_guard.core.sinks import parse_kind

    if name in guard.settings.sinks:
        return guard.resolve_sink(name)
    try:
        kind, tenant = parse_kind(name)
    except ConfigError as exc:
        raise Exit(
            EXIT_USAGE, f"error: unknown sink {name!r}: not in the config and not a kind ({exc})"
        ) from exc
    return guard.resolve_sink(name, kind=kind, tenant=tenant)


# -- label ---------------------------------------------------------------------------

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
    if cls in _MINTED_ELSEWHERE:
        raise Exit(EXIT_USAGE, f"error: cannot label as {cls}: {_MINTED_ELSEWHERE[cls]}")
    if cls.tenant_bound:
        if not tenant:
            raise Exit(EXIT_USAGE, f"error: --tenant is required for {cls}")
        validate_tenant(tenant)
    elif tenant:
        raise Exit(EXIT_USAGE, f"error: {cls} belongs to no tenant; drop --tenant")
    guard = open_guard(ctx)
    indexed = 0
    max_bytes = guard.settings.limits.max_record_bytes
    refusals: list[dict[str, Any]] = []
    sealed = 0
    with _open_input(input_path) as stream, atomic_output(out) as (fh, commit):
        for item in iter_lines(stream, max_bytes):
            if isinstance(item, Line):
                problem = _label_line(guard, item, fh, tenant=tenant, cls=cls, source=source)
                if problem is None and cls is DataClass.CUSTOMER_CONTENT and tenant:
                    indexed += guard.fingerprints.add(tenant, orjson.loads(item.raw))
                number = item.number
            else:
                number, bad = item
                problem = (bad.rule, bad.reason)
            if problem is None:
                sealed += 1
            else:
                refusals.append({"line": number, "rule": problem[0], "reason": problem[1]})
        commit[0] = True
    if indexed:
        guard.audit.append(
            {
                "event": "fingerprints.index",
                "tenant": guard.keys.pseudonym(tenant),
                "count": indexed,
            }
        )
    unreadable = sum(1 for r in refusals if r["rule"].startswith("input."))
    doc = {
        "input": str(input_path),
        "out": str(out),
        "class": cls.value,
        "tenant": guard.keys.pseudonym(tenant) if tenant else None,
        "fingerprints_indexed": indexed,
        "total": sealed + len(refusals),
        "sealed": sealed,
        "refused": len(refusals),
        "refusals": refusals,
    }
    if report_path is not None:
        report_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    if doc["total"] == 0:
        click.echo(f"{input_path}: no records (empty input); wrote an empty {out}")
    else:
        click.echo(
            f"label {input_path} -> {out}: sealed {sealed:,} as {cls}"
            f"{f' of {tenant}' if tenant else ''}, refused {len(refusals):,}"
        )
    for r in refusals[:SUMMARY_VIOLATIONS]:
        click.echo(f"  line {r['line']}: {r['rule']}: {r['reason']}", err=True)
    raise Exit(EXIT_USAGE if unreadable else EXIT_VIOLATION if refusals else EXIT_OK)


def _label_line(
    guard: Any, line: Line, fh: BinaryIO | None, *, tenant: str | None, cls: DataClass, source: str
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
        else:
            seal = guard.seal(value, tenant=tenant, data_class=cls, source=source)
    except ContentRefused as exc:
        return exc.rule, exc.reason
    except (ValueError, ContentError) as exc:
        return "label.refused", str(exc)
    if fh is not None:
        fh.write(sealed_line(value, seal))
    return None
