"""The JSONL scan feeds the bytes-scanned metric of its check."""

from __future__ import annotations

import io
from pathlib import Path

from kg_testing import make_guard
from otel_support import Sdk

from kairo_guard import Guard, KeyRing, make_sink
from kairo_guard.cli.records import scan_stream
from kairo_guard.otel.names import METRIC_BYTES


def test_scan_counts_the_bytes_it_read(traced: Guard, sdk: Sdk) -> None:
    lines = b'{"a": 1}\n{"b": "two"}\n\n{"c": [3]}\n'
    run = traced.checks.start(make_sink("t", "shared-training"), mode="filter")
    report = scan_stream(run, io.BytesIO(lines), None, 1 << 20)
    assert report.blocked == 3
    assert sum(point.value for _, point in sdk.points(METRIC_BYTES)) == len(lines)


def test_scan_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, ring: KeyRing) -> None:
    import gc

    with make_guard(tmp_path / "state", ring=ring, pii_gate=False) as guard:
        run = guard.checks.start(make_sink("t", "shared-training"), mode="filter")
        before = gc.get_freeze_count()
        scan_stream(run, io.BytesIO(b'{"a": 1}\n' * 10), None, 1 << 20)
    assert gc.get_freeze_count() == before == 0
