"""Arrow tables, pandas DataFrames and Parquet files at a sink.

``pip install "kairo-guard[arrow]"``. A sealed record bound for a columnar format
carries its canonical content bytes beside its seal (:mod:`kairo_guard.core.columnar`),
so it still verifies after the format has unified its keys into nullable columns, turned
integers with a gap into floats or re-read a time as a timestamp:

* :func:`sealed_table` builds an Arrow table from sealed records: one column per key any
  record has (a record without it holds a null), the seal column ``_kairo``, the
  canonical bytes column ``_kairo_canonical`` and a dataset manifest in the schema
  metadata (:data:`MANIFEST_KEY`: which columns carry the seals);
* :func:`write_parquet` writes such a table (or records) to Parquet;
* :func:`check_table` decides a table or DataFrame at a sink and returns what may pass
  (enforce: everything, or :class:`~kairo_guard.core.exceptions.IsolationViolation`;
  filter: the rows that pass, same schema); ``guard.check(table, ...)`` gives the report
  alone;
* :func:`check_parquet` reads a Parquet file one record batch at a time in one check
  (memory bounded by the batch), and writes the rows that may pass to ``out``. A file
  whose manifest names a seal column it no longer has (a projection that dropped
  ``_kairo``) is refused whole, with a rule of its own; without the column its rows are
  unsealed anyway, and refused at shared sinks.

The manifest is a convenience for readers and a check of projections; each row is
verified on its own, so a manifest cannot vouch for anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kairo_guard.core.columnar import CANONICAL_FIELD, with_canonical
from kairo_guard.core.exceptions import IsolationViolation
from kairo_guard.core.report import CheckReport
from kairo_guard.core.types import SEAL_FIELD, Mode, Outcome
from kairo_guard.guard import Guard

MANIFEST_KEY = b"kairo_guard"
"""Schema metadata key of the dataset manifest (JSON)."""
MANIFEST_VERSION = 1
DROPPED_SEAL_RULE = "table.seal-column-dropped"
BATCH_ROWS = 8192
"""Rows a Parquet check reads at a time."""


def sealed_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """An Arrow table of sealed records, with their canonical bytes and a manifest.

    Raises:
        ContentError: a record's content has no canonical JSON encoding.
    """
    return with_manifest(pa.table(sealed_columns(records)))


def sealed_columns(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The columns of sealed records: one per key any record has (a null where a record
    lacks it), then the seal and the canonical content bytes.

    Raises:
        ContentError: a record's content has no canonical JSON encoding.
    """
    rows = [with_canonical(r) for r in records]
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(k for k in row if k not in (SEAL_FIELD, CANONICAL_FIELD)))
    columns: dict[str, Any] = {k: [row.get(k) for row in rows] for k in names}
    columns[SEAL_FIELD] = pa.array([row.get(SEAL_FIELD) for row in rows], pa.string())
    columns[CANONICAL_FIELD] = pa.array([row[CANONICAL_FIELD] for row in rows], pa.binary())
    return columns


def with_manifest(table: pa.Table) -> pa.Table:
    """``table`` with a dataset manifest in its schema metadata (replacing one)."""
    return table.replace_schema_metadata(_manifested(table.schema).metadata)


def _manifested(schema: pa.Schema) -> pa.Schema:
    manifest = {
        "v": MANIFEST_VERSION,
        "seal_column": SEAL_FIELD,
        "canonical_column": CANONICAL_FIELD,
    }
    metadata = dict(schema.metadata or {})
    metadata[MANIFEST_KEY] = json.dumps(manifest, sort_keys=True).encode()
    return schema.with_metadata(metadata)


def manifest_of(schema: pa.Schema) -> dict[str, Any] | None:
    """The dataset manifest of a schema, or None (absent or unreadable)."""
    raw = (schema.metadata or {}).get(MANIFEST_KEY)
    try:
        found = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def write_parquet(data: pa.Table | Iterable[Mapping[str, Any]], path: Path | str) -> int:
    """Write sealed records (or a table from :func:`sealed_table`) to Parquet; return
    the number of rows."""
    table = data if isinstance(data, pa.Table) else sealed_table(data)
    if manifest_of(table.schema) is None:
        table = with_manifest(table)
    pq.write_table(table, str(path))
    return int(table.num_rows)


def check_table(guard: Guard, table: Any, *, sink: str, mode: str | None = None) -> Any:
    """What of ``table`` (an Arrow table or a pandas DataFrame) may pass ``sink``: all
    of it in enforce mode (or :class:`IsolationViolation`), the rows that pass in filter
    mode, all of it in observe mode (the refusals audited). Same kind and schema."""
    run = guard.checks.start(sink, mode=mode)
    schema = table.schema if isinstance(table, pa.Table) else None
    if schema is not None and _dropped_seal(schema):
        _refuse_all(run, table.num_rows)
        return _finish(run, table, [])
    rows = table.to_pylist() if isinstance(table, pa.Table) else _frame_rows(table)
    decisions = run.decide_many(rows)
    kept = [i for i, d in enumerate(decisions) if d.outcome is Outcome.ALLOW]
    return _finish(run, table, kept)


def _frame_rows(frame: Any) -> list[dict[str, Any]]:
    return list(frame.to_dict(orient="records"))


def _finish(run: Any, table: Any, kept: list[int]) -> Any:
    report = run.finish()
    if run.mode is Mode.OBSERVE or len(kept) == len(table):
        return table
    if run.mode is Mode.ENFORCE:
        raise IsolationViolation(report)
    if isinstance(table, pa.Table):
        return table.take(pa.array(kept, pa.int64()))
    return table.iloc[kept]


def _dropped_seal(schema: pa.Schema) -> bool:
    manifest = manifest_of(schema)
    return manifest is not None and manifest.get("seal_column", SEAL_FIELD) not in schema.names


def _refuse_all(run: Any, rows: int) -> None:
    reason = "the table's manifest names a seal column the table no longer has"
    for _ in range(rows):
        run.block_unreadable(DROPPED_SEAL_RULE, reason, None)


def check_parquet(
    guard: Guard,
    path: Path | str,
    *,
    sink: str,
    mode: str | None = None,
    out: Path | str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> CheckReport:
    """Decide every row of a Parquet file at ``sink``, one record batch at a time, in
    one check; write the rows that may pass to ``out`` (with the file's schema and a
    manifest for them). In enforce mode a refused row ends the check: nothing is
    written and :class:`IsolationViolation` carries the report.
    """
    source = pq.ParquetFile(str(path))
    schema = source.schema_arrow
    run = guard.checks.start(sink, mode=mode)
    dropped = _dropped_seal(schema)
    partial = None if out is None else Path(str(out) + ".partial")
    writer = None if partial is None else pq.ParquetWriter(str(partial), _manifested(schema))
    try:
        for batch in source.iter_batches(batch_size=batch_rows):
            kept = _check_batch(run, batch, dropped)
            if run.mode is Mode.ENFORCE and len(kept) < batch.num_rows:
                raise IsolationViolation(run.finish())
            if writer is not None and kept:
                writer.write_table(pa.Table.from_batches([batch]).take(pa.array(kept)))
        report = run.finish()
        if writer is not None:
            writer.close()
            writer = None
            os.replace(str(partial), str(out))  # whole or not at all
    finally:
        if writer is not None:
            writer.close()
        if partial is not None:
            partial.unlink(missing_ok=True)
    return report


def _check_batch(run: Any, batch: pa.RecordBatch, dropped: bool) -> list[int]:
    if dropped:
        _refuse_all(run, batch.num_rows)
        return []
    decisions = run.decide_many(batch.to_pylist())
    keep_all = run.mode is Mode.OBSERVE
    return [i for i, d in enumerate(decisions) if keep_all or d.outcome is Outcome.ALLOW]
