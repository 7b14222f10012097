"""A short run of the load test (benchmarks/load_pg.py): uvicorn workers ingesting on
one real PostgreSQL store; every accepted body is then in the store under the tenant
that sent it, no other answer but 413/503, and the audit log verifies against its
anchor. (The documented run is 60 s with 4 workers: benchmarks/RESULTS.md.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "load_pg.py"


def test_workers_on_postgresql_keep_every_accepted_body_under_its_tenant() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "4", "--workers", "2", "--clients", "24",
         "--tenants", "6"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[-1] == "PASS"
    accepted = next(line for line in lines if line.startswith("accepted "))
    count = int(accepted.split()[1].rstrip(";").replace(",", ""))
    assert count > 100  # the load was real
    assert "missing 0, cross-tenant 0, unsealed 2xx 0; others none" in accepted
