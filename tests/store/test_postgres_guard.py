"""Two replicas of a guard on one PostgreSQL store (``KAIRO_GUARD_DB_URL``): content one
of them seals is blocked at the other's shared sink."""

from __future__ import annotations

from pathlib import Path

from corpus import prose
from kg_testing import make_guard, mint_unchecked
from store_backends import schema_url

from kairo_guard import KeyRing
from kairo_guard.core.types import SEAL_FIELD, DataClass
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE
from kairo_guard.store.postgres import PostgresStore
from kairo_guard.store.sqlite import DB_FILE_NAME

DOC = prose("acme-supply-contract", 2)[:600]
"""A ~600-character document of acme's."""


def test_when_one_replica_seals_customer_content_then_another_blocks_it_at_a_shared_sink(
    tmp_path: Path, ring: KeyRing, pg_schema: str
) -> None:
    url = schema_url(pg_schema)  # postgresql://...?options=-csearch_path%3D<schema>
    homes = {name: tmp_path / name for name in ("ingest", "train")}
    replicas = [
        make_guard(
            home,
            ring=ring,
            pii_gate=False,
            env={"KAIRO_GUARD_DB_URL": url, "KAIRO_GUARD_AUDIT_LOG_ID": name},
        )
        for name, home in homes.items()
    ]
    with replicas[0] as ingest, replicas[1] as train:
        assert isinstance(ingest.store, PostgresStore)
        assert isinstance(train.store, PostgresStore)
        copy = {"text": DOC}
        vetted = {**copy, SEAL_FIELD: mint_unchecked(train, copy, data_class="operator_public")}
        sink = train.resolve_sink("corpus", kind="shared-training")
        assert train.check([vetted], sink=sink).allowed == 1  # nobody's content yet

        ingest.seal({"title": "Supply contract", "text": DOC}, tenant="acme", source="upload")

        report = train.check([vetted], sink=sink)
        assert report.blocked == 1
        assert report.violations[0].rule == FINGERPRINT_RULE
        assert train.open_seal(vetted[SEAL_FIELD]).data_class is DataClass.OPERATOR_PUBLIC
    assert not [home for home in homes.values() if (home / DB_FILE_NAME).exists()]
