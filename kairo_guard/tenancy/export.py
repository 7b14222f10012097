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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from kairo_guard.audit.log import AuditLog
from kairo_guard.audit.verify import parse_entry
from kairo_guard.core.exceptions import AuditIntegrityError
from kairo_guard.core.types import TenantId, validate_tenant
from kairo_guard.store.base import Agreement, DatasetInfo, ModelInfo, ProvenanceRow, Store
from kairo_guard.tenancy.models import ModelRegistry

SECTIONS = ("provenance", "agreements", "datasets", "models", "decisions")
FORMATS = ("json", "csv")
_DECISION_FIELDS = ("index", "outcome", "rule", "digest")
_DROP = frozenset({"prev", "rows"})


class TenantExport:
    """Exports what the guard holds about one tenant (see the module docstring).

    Args:
        store: provenance, agreements and datasets.
        models: the model registry (a tenant's models, marked ones included).
        pseudonym: tenant id -> keyed pseudonym.
        audit: the audit log: flushed first, then read for the ``decisions`` section.
        clock: Unix-seconds clock.
    """

    def __init__(
        self,
        *,
        store: Store,
        models: ModelRegistry,
        pseudonym: Callable[[TenantId], str],
        audit: AuditLog,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._models = models
        self._pseudonym = pseudonym
        self._audit = audit
        self._clock = clock

    def export(self, tenant: TenantId) -> dict[str, Any]:
        """Return everything the guard holds about ``tenant``, by section (JSON-ready).

        Raises:
            ValueError: for an invalid tenant id.
            StoreError: if the store cannot be read.
            AuditIntegrityError: if an audit entry naming the tenant is not intact.
        """
        validate_tenant(tenant)
        pseudonym = self._pseudonym(tenant)
        self._audit.flush()  # so the decisions section includes everything decided so far
        store = self._store
        sections = {
            "provenance": [_provenance(r) for r in store.list_provenance(tenant)],
            "agreements": [_agreement(a) for a in store.list_agreements(tenant)],
            "datasets": [_dataset(d) for d in store.list_datasets(tenant)],
            "models": [_model(m) for m in self._models.list_models(tenant)],
            "decisions": list(_audit_entries(self._audit.path, pseudonym)),
        }
        return {
            "tenant": tenant,
            "pseudonym": pseudonym,
            "exported_at": self._clock(),
            "sections": sections,
        }


def _provenance(r: ProvenanceRow) -> dict[str, Any]:
    return {
        "digest": r.digest,
        "class": r.data_class,
        "source": r.source,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
    }


def _agreement(a: Agreement) -> dict[str, Any]:
    return {
        "id": a.id,
        "scope": a.scope,
        "granted_at": a.granted_at,
        "expires_at": a.expires_at,
        "revoked_at": a.revoked_at,
        "reference": a.reference,
    }


def _dataset(d: DatasetInfo) -> dict[str, Any]:
    return {
        "id": d.id,
        "path": str(d.path),
        "record_count": d.record_count,
        "created_at": d.created_at,
        "agreement_id": d.agreement_id,
        "manifest_digest": d.manifest_digest,
        "status": d.status,
    }


def _model(m: ModelInfo) -> dict[str, Any]:
    return {
        "model_id": m.model_id,
        "dataset": m.dataset,
        "registered_at": m.registered_at,
        "status": m.status,
        "manifest_digest": m.manifest_digest,
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
