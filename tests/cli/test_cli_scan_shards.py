"""``kairo-guard scan`` of vetted shards (what ``label --class operator_public`` writes):
the fast path takes a line only when its bytes are exactly a vetted record, and gives
every other line (changed, re-sealed, against content indexed since) to the full checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from cli_support import load, read_jsonl, where, write_jsonl
from corpus import prose

from kairo_guard.cli.records import SCAN_BATCH

SCAN = ("scan", "--sink", "shared-training", "--mode", "filter", "--report", "report.json")


def _vetted(kg: Any, tmp_path: Path, records: list[dict[str, Any]]) -> list[bytes]:
    write_jsonl(tmp_path / "ops.jsonl", records)
    labelled = kg("label", "ops.jsonl", "--class", "operator_public", "--out", "ops.kp.jsonl")
    assert labelled.code == 0, labelled.err
    return (tmp_path / "ops.kp.jsonl").read_bytes().splitlines()


def test_vetted_lines_pass_and_changed_ones_do_not(kg: Any, tmp_path: Path) -> None:
    records = [
        {"id": i, "text": f"Public note {i}: restart the worker after upgrades."} for i in range(5)
    ]
    lines = _vetted(kg, tmp_path, records)
    first = orjson.loads(lines[0])
    changed = lines[1].replace(b"note 1", b"note 9")
    reordered = orjson.dumps({"text": first["text"], "id": 0, "_kairo": first["_kairo"]})
    swapped = lines[2].replace(
        orjson.loads(lines[2])["_kairo"].encode(), orjson.loads(lines[3])["_kairo"].encode()
    )
    (tmp_path / "in.jsonl").write_bytes(
        b"\n".join([lines[0], changed, reordered, swapped, lines[4]]) + b"\n"
    )
    result = kg(*SCAN, "in.jsonl", "--out", "kept.jsonl")
    assert result.code == 1
    report = load(tmp_path / "report.json")
    assert where(report) == [(2, "seal.digest-mismatch"), (4, "seal.digest-mismatch")]
    kept = read_jsonl(tmp_path / "kept.jsonl")
    assert [r["id"] for r in kept] == [0, 0, 4]  # the re-ordered copy is the same record


def test_a_vetted_line_against_content_indexed_since_is_checked_in_full(
    kg: Any, tmp_path: Path
) -> None:
    secret = prose("scan-shards-later", paragraphs=2)
    public = [{"text": f"Release notes. {secret[:600]}"}] + [
        {"text": f"Changelog entry {i}: faster startup."} for i in range(2 * SCAN_BATCH)
    ]
    lines = _vetted(kg, tmp_path, public)
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert kg(*SCAN, "in.jsonl").code == 0

    write_jsonl(tmp_path / "acme.jsonl", [{"text": secret}])
    assert kg("label", "acme.jsonl", "--tenant", "acme", "--class", "customer_content",
              "--out", "acme.sealed.jsonl").code == 0  # fmt: skip
    assert kg(*SCAN, "in.jsonl").code == 1
    report = load(tmp_path / "report.json")
    assert where(report) == [(1, "fingerprint.tenant-content")]
    assert report["allowed"] == 2 * SCAN_BATCH
