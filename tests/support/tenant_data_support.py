"""State for the retention, erasure and export tests: tenants with every kind of data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus import prose

from kairo_guard import Guard
from kairo_guard.core.types import SEAL_FIELD
from kairo_guard.ingest.apikeys import new_api_key

T0 = 1_800_000_000
DAY = 86400
# Distinctive ids, so that a search of the state for one cannot hit anything else.
ERASED = "tenant-erase-me-q7"
KEPT = "tenant-keep-me-z4"


class Clock:
    """An injectable clock (Unix seconds) that tests move forward."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class TenantState:
    """What :func:`populate` made for one tenant."""

    tenant: str
    records: list[dict[str, Any]]
    api_key: str
    dataset_id: str
    dataset_path: Path
    model_id: str


def populate(guard: Guard, tenant: str, root: Path, tag: str, n: int = 3) -> TenantState:
    """Give ``tenant`` an API key, an agreement, fingerprints, provenance rows, a retention
    period, a dataset, a model and audited decisions. ``tag`` names its files."""
    api_key = new_api_key(guard.store, tenant, now=guard.clock())
    guard.grant_agreement(tenant, reference="dpa-2031")
    records = []
    for i in range(n):
        body = {"text": prose(f"{tag}-{i}", paragraphs=2)}
        guard.index_content(tenant, body)
        # a source and a model named after the tenant, as the README and examples do
        record = guard.label_record(body, tenant=tenant, source=f"upload_{tenant}")
        guard.tenancy.retention.record_provenance(record[SEAL_FIELD])
        records.append(record)
    guard.set_retention(tenant, "customer_content", 180 * DAY)
    builder = guard.tenant_dataset(tenant)
    for record in records:
        builder.add(record)
    path = root / f"dataset-{tag}"
    manifest = builder.write(path)
    model_id = f"{tenant}-support-{tag}"
    guard.register_model(model_id, dataset=manifest, owner=tenant)
    guard.check(records, sink=guard.resolve_sink(f"ft-{tag}", kind=f"tenant-fine-tune:{tenant}"))
    return TenantState(tenant, records, api_key, manifest.dataset_id, path, model_id)
