"""Erasure of a large tenant on SQLite: ``Guard.erase_tenant`` wall time.

The state, built before the clock starts:

* tenant T: ``--records`` (100,000) customer records of about 300 characters, each
  sealed, fingerprinted into the index and recorded as a provenance row; a tenant
  dataset of all of them (the dataset builder, a signed manifest); a registered model;
  an API key, an agreement, a retention period;
* ``--others`` (2) other tenants with ``--other-records`` (10,000) records each, with
  fingerprints, provenance rows, an API key and an agreement, which must survive.

Timed: one ``guard.erase_tenant(T)`` call (fingerprints, provenance, agreements, keys,
retention periods in one transaction with ``secure_delete``, the rebuild of the file
(``VACUUM``), the WAL checkpoint, the
dataset files, the models, the receipt, the audit entry and its flush). Checked after,
untimed: no table holds T's id, the other tenants' row counts are unchanged, the audit
log verifies. Target (issue 6): under 60 s. Exit 1 if a check fails or the target is
missed.

Run: ``.venv/bin/python benchmarks/bench_erasure.py`` (``--help`` for options). A script,
not a test.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import machine_info

from kairo_guard import Guard, KeyRing, verify_audit
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD
from kairo_guard.core.types import SEAL_FIELD
from kairo_guard.guard import AUDIT_DIR_NAME
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.store.base import ProvenanceRow
from kairo_guard.store.sqlite import DB_FILE_NAME

TARGET_S = 60.0
ERASED = "tenant-erased-bench"
CHUNK = 10_000
_VOCABULARY = """
invoice contract renewal shipment warehouse ledger audit quarterly forecast region customer
supplier margin pricing discount payment overdue escalation ticket agent summary transcript
meeting roadmap migration cluster latency incident postmortem deadline milestone approval
budget headcount vendor compliance policy retention
"""
_WORDS = _VOCABULARY.split()


def _text(rng: random.Random, chars: int = 300) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = (
            rng.choice(_WORDS)
            if rng.random() < 0.8
            else f"{rng.choice(_WORDS)}{rng.randrange(10**6)}"
        )
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def _fill(guard: Guard, tenant: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Seal, fingerprint and record provenance of ``n`` records of ``tenant``."""
    rng = random.Random(seed)
    new_api_key(guard.store, tenant)
    guard.grant_agreement(tenant, reference="bench")
    records: list[dict[str, Any]] = []
    for start in range(0, n, CHUNK):
        fps: set[int] = set()
        rows = []
        for _ in range(min(CHUNK, n - start)):
            body = {"text": _text(rng)}
            fps |= guard.fingerprints.fingerprinter.of_record(body)
            record = guard.label_record(body, tenant=tenant, source="agent-run:bench")
            label = guard.open_seal(record[SEAL_FIELD])
            rows.append(ProvenanceRow.of_label(label, tenant))
            records.append(record)
        guard.store.add_fingerprints(tenant, fps)
        guard.store.add_provenance(rows)
    return records


def _counts(db: Path, tenant: str) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {}
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info('{table}')")]
            if "tenant" in columns:
                out[table] = conn.execute(
                    f'SELECT COUNT(*) FROM "{table}" WHERE tenant = ?', (tenant,)
                ).fetchone()[0]
    return out


def _tables_holding(db: Path, needle: str) -> list[str]:
    found = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in [r[1] for r in conn.execute(f"PRAGMA table_info('{table}')")]:
                sql = f'SELECT COUNT(*) FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?) > 0'
                if conn.execute(sql, (needle,)).fetchone()[0]:
                    found.append(f"{table}.{column}")
    return found


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    ring = KeyRing.generate()
    others = [f"tenant-other-{i}" for i in range(args.others)]
    with Guard(home=root / "state", key=ring, env={}, pii_gate=False) as guard:
        db = guard.settings.home / DB_FILE_NAME
        t0 = time.perf_counter()
        records = _fill(guard, ERASED, args.records, seed=1)
        for i, other in enumerate(others):
            _fill(guard, other, args.other_records, seed=100 + i)
        builder = guard.tenant_dataset(ERASED)
        builder.add_all(records)
        manifest = builder.write(root / "dataset")
        guard.register_model("bench-model", dataset=manifest, owner=ERASED)
        guard.set_retention(ERASED, "customer_content", 180 * 86400)
        guard.audit.flush()
        build_s = time.perf_counter() - t0
        before = {t: _counts(db, t) for t in [ERASED, *others]}
        size_mb = db.stat().st_size / 1e6

        start = time.perf_counter()
        receipt = guard.erase_tenant(ERASED)
        erase_s = time.perf_counter() - start

        after = {t: _counts(db, t) for t in others}
        survivors_ok = all(after[t] == before[t] for t in others)
        left = _tables_holding(db, ERASED)
        denied = not guard.check_model_access("bench-model", ERASED)
    audit = verify_audit(root / "state" / AUDIT_DIR_NAME, ring.subkeys(PURPOSE_AUDIT_HEAD))
    ok = survivors_ok and not left and audit.ok and denied and erase_s < TARGET_S
    return {
        "benchmark": "erasure",
        "machine": machine_info.machine(),
        "records": args.records,
        "other_tenants": args.others,
        "other_records_each": args.other_records,
        "rows_of_tenant_before": before[ERASED],
        "database_mb_before": round(size_mb, 1),
        "build_s": round(build_s, 1),
        "erase_s": round(erase_s, 2),
        "target_s": TARGET_S,
        "removed": dict(receipt.removed),
        "models_marked_for_deletion": receipt.models_marked_for_deletion,
        "other_tenants_untouched": survivors_ok,
        "tables_still_holding_tenant": left,
        "model_denied": denied,
        "audit_verifies": audit.ok,
        "ok": ok,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--others", type=int, default=2)
    parser.add_argument("--other-records", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="Also write the result here.")
    parser.add_argument("--dir", type=Path, help="Work here (default: a temporary directory).")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kg-bench-erasure-", dir=args.dir))
    try:
        result = run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
