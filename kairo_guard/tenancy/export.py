"""Export of one tenant's data (portability): what the guard holds about it, and nothing else.

Sections:

``provenance``
    One row per sealed piece of ingested content: digest, class, source, created_at,
    expires_at (never the content, which the guard does not keep).
``agreements``
    Its fine-tune agreements.
``datasets``
    Its tenant datasets (id, path, record count, manifest digest, status).
``models``
    Models registered to it.
``decisions``
    Audit log entries that name its pseudonym; of a batch of sink decisions only its
    own rows (index, outcome, rule, digest), never another tenant's.

JSON is one document ``{"tenant", "pseudonym", "exported_at", "sections": {...}}``.
CSV is a directory with one file per section (``provenance.csv`` ...), a header row of
the section's columns, nested values as JSON text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from kairo_guard.audit.verify import LOG_NAME, parse_entry
from kairo_guard.core.exceptions import AuditIntegrityError
from kairo_guard.core.types import TenantId, validate_tenant

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

SECTIONS = ("provenance", "agreements", "datasets", "models", "decisions")
FORMATS = ("json", "csv")
_DECISION_FIELDS = ("index", "outcome", "rule", "digest")
_DROP = frozenset({"prev", "rows"})


def export_tenant(guard: Guard, tenant: TenantId) -> dict[str, Any]:
    """Return everything the guard holds about ``tenant``, by section (JSON-ready).

    Raises:
        ValueError: for an invalid tenant id.
        StoreError: if the store cannot be read.
        AuditIntegrityError: if an audit entry naming the tenant is not intact.
    """
    validate_tenant(tenant)
    pseudonym = guard.keys.pseudonym(tenant)
    guard.audit.flush()  # so the decisions section includes everything decided so far
    sections: dict[str, list[dict[str, Any]]] = {
        "provenance": [
            {
                "digest": r.digest,
                "class": r.data_class,
                "source": r.source,
                "created_at": r.created_at,
                "expires_at": r.expires_at,
            }
            for r in guard.store.list_provenance(tenant)
        ],
        "agreements": [
            {
                "id": a.id,
                "scope": a.scope,
                "granted_at": a.granted_at,
                "expires_at": a.expires_at,
                "revoked_at": a.revoked_at,
                "reference": a.reference,
            }
            for a in guard.agreements(tenant)
        ],
        "datasets": [
            {
                "id": d.id,
                "path": str(d.path),
                "record_count": d.record_count,
                "created_at": d.created_at,
                "agreement_id": d.agreement_id,
                "manifest_digest": d.manifest_digest,
                "status": d.status,
            }
            for d in guard.datasets(tenant)
        ],
        "models": [
            {
                "model_id": m.model_id,
                "dataset": m.dataset,
                "registered_at": m.registered_at,
                "status": m.status,
                "manifest_digest": m.manifest_digest,
            }
            for m in guard.models(tenant)
        ],
        "decisions": list(_audit_entries(guard.settings.home / "audit" / LOG_NAME, pseudonym)),
    }
    return {
        "tenant": tenant,
        "pseudonym": pseudonym,
        "exported_at": guard.clock(),
        "sections": sections,
    }


def _audit_entries(path: Path, pseudonym: str) -> Iterator[dict[str, Any]]:
    """Yield the audit entries (and decision rows) that concern ``pseudonym``."""
    needle = pseudonym.encode("ascii")
    try:
        log = path.open("rb")
    except FileNotFoundError:
        return
    with log:
        for number, line in enumerate(log, start=1):
            if needle not in line or not line.endswith(b"\n"):
                continue  # cheap: most lines are about other tenants
            try:
                entry, _ = parse_entry(line[:-1])
            except ValueError as exc:
                raise AuditIntegrityError(f"audit line {number}: {exc}", line=number) from exc
            yield from _concerning(entry, pseudonym)


def _concerning(entry: dict[str, Any], pseudonym: str) -> Iterator[dict[str, Any]]:
    own_sink = entry.get("sink_tenant") in (None, pseudonym)
    base = {k: v for k, v in entry.items() if k not in _DROP}
    if not own_sink:  # another tenant's fine-tune sink: its name holds their pseudonym
        base.pop("sink", None)
        base.pop("sink_tenant", None)
    if entry.get("event") == "decisions":
        for row in entry.get("rows") or ():
            if isinstance(row, list) and len(row) == 5 and row[4] == pseudonym:
                yield {
                    **base,
                    "event": "decision",
                    **dict(zip(_DECISION_FIELDS, row, strict=False)),
                }
    elif pseudonym in (entry.get("tenant"), entry.get("sink_tenant")):
        yield base


def write_json(doc: dict[str, Any]) -> bytes:
    """Return the export as indented JSON."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def write_csv(doc: dict[str, Any], directory: Path) -> list[Path]:
    """Write one CSV file per section into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for section in SECTIONS:
        rows: list[dict[str, Any]] = doc["sections"][section]
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(_cell(row.get(column)) for column in columns)
        path = directory / f"{section}.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8")
        paths.append(path)
    return paths


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return orjson.dumps(value).decode()
    return str(value)
