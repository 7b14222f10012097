"""Every benchmark that needs nothing beyond ``make test``'s install runs at a tiny size.

A benchmark nobody runs breaks unnoticed (one failed for sessions once vetting needed a
signing key; another generated operator records that copied its customer records, which
vetting rightly refused). These runs measure nothing worth reading; they show each
script still reaches its report. Left out: the ones that need ``wrk``
(``bench_middleware.py``, ``bench_middleware_floor.py``) or ``valgrind`` and minutes
(``bench_middleware_instructions.py``, ``count_otel.py``), Ray's start-up
(``bench_ray.py``), the spaCy model over a corpus (``eval_pii.py``,
``eval_open_door.py``) and PostgreSQL load (``load_pg.py``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

RUNS = {  # arguments, and a line of the report
    "bench_audit": ("--decisions 2000 --reps 1 --no-pin", "total wall time"),
    "bench_erasure": ("--records 500 --others 1 --other-records 100", '"ok": true'),
    "bench_fingerprint": ("--kib 8 --record-kib 4 --repeats 1 --no-reference", "overall"),
    "bench_fingerprint_check": (
        "--fingerprints 10000 --records 500 --old-records 100 --reps 1 --no-pin",
        "target (a)",
    ),
    "bench_middleware_cpu": ("--requests 320 --rounds 1", "extra loop-thread CPU"),
    "bench_otel": (
        "--requests 20 --reps 2 --path-requests 50 --records 10 --checks 5 --check-reps 2 --no-pin",
        "check of 10 records",
    ),
    "bench_scan": ("--records 500 --reps 1 --no-pin --kind all", "targets"),
    "bench_scrub": ("--batches 1 --reps 1", "spans/s"),
    "bench_seal": ("--records 20 --rounds 1", "label_record"),
    "bench_spool_writer": ("--sizes 1024 --megabytes 1 --rounds 1", "median native/thread"),
    "eval_fingerprints": ("--docs 5 --negatives 100 --trials 10", "false positives: 0 of 100"),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_benchmark_runs_to_its_report(name: str, tmp_path: Path) -> None:
    args, marker = RUNS[name]
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *args.split()],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert marker in output, output[-3000:]
