"""``kairo-guard scan``: verdicts, reports, and what --out holds in each mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from cli_support import load, operator_lines, where
from kg_testing import make_guard, sealed_record

from kairo_guard import KeyRing
from kairo_guard.core.content import sealed_line


def test_when_labelled_customer_content_is_scanned_for_shared_training_then_it_is_blocked(
    kg: Any, acme_sealed: Path, tmp_path: Path
) -> None:
    result = kg("scan", acme_sealed, "--sink", "shared-training", "--report", "report.json")

    assert result.code == 1
    report = load(tmp_path / "report.json")
    assert {"sink", "total", "allowed", "blocked", "by_rule", "violations"} <= report.keys()
    assert (report["sink"], report["total"], report["allowed"], report["blocked"]) == (
        "shared-training",
        3,
        0,
        3,
    )
    assert report["by_rule"] == {"class.customer-content-shared": 3}
    assert where(report) == [(n, "class.customer-content-shared") for n in (1, 2, 3)]
    assert all("customer content" in v["reason"] for v in report["violations"])
    assert "blocked" in result.out


# -- scan modes ----------------------------------------------------------------------


@pytest.fixture
def mixed(home: Path, ring: KeyRing, tmp_path: Path) -> tuple[Path, list[bytes], list[bool]]:
    """Operator data (written in unusual but valid JSON) mixed with refused lines."""
    with make_guard(home, ring=ring) as guard:
        ops = [
            sealed_record(guard, {"id": i, "text": f"public {i} ü"}, data_class="operator_public")
            for i in range(3)
        ]
        customer = guard.label_record({"id": 9, "text": "acme secret"}, tenant="acme")
    lines = [
        json.dumps(ops[0], ensure_ascii=False, separators=(" , ", " : ")).encode(),
        orjson.dumps(customer),
        json.dumps({"_kairo": ops[1]["_kairo"], "text": ops[1]["text"], "id": 1}).encode(),
        b'{"broken": ',
        json.dumps(ops[2], indent=None).encode() + b"   \t",
    ]
    allowed = [True, False, True, False, True]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path, lines, allowed


def test_when_filter_mode_then_out_holds_exactly_the_allowed_records_in_canonical_form(
    kg: Any, mixed: tuple[Path, list[bytes], list[bool]], tmp_path: Path
) -> None:
    path, lines, allowed = mixed

    result = kg(
        "scan",
        path,
        "--sink",
        "shared-training",
        "--mode",
        "filter",
        "--out",
        "out.jsonl",
        "--report",
        "report.json",
    )

    assert result.code == 1
    # what was verified is what is written: lines in another form are re-encoded
    expected = b""
    for line, ok in zip(lines, allowed, strict=True):
        if ok:
            value = orjson.loads(line)
            expected += sealed_line(value, value.pop("_kairo"))
    assert (tmp_path / "out.jsonl").read_bytes() == expected
    report = load(tmp_path / "report.json")
    assert (report["mode"], report["allowed"], report["blocked"]) == ("filter", 3, 2)
    assert where(report) == [(2, "class.customer-content-shared"), (4, "input.malformed-json")]


def test_when_observe_mode_then_out_holds_every_line_and_violations_are_still_reported(
    kg: Any, mixed: tuple[Path, list[bytes], list[bool]], tmp_path: Path
) -> None:
    path, _, _ = mixed

    result = kg(
        "scan",
        path,
        "--sink",
        "shared-training",
        "--mode",
        "observe",
        "--out",
        "out.jsonl",
        "--report",
        "report.json",
    )

    assert result.code == 1
    assert (tmp_path / "out.jsonl").read_bytes() == path.read_bytes()
    report = load(tmp_path / "report.json")
    assert (report["mode"], report["allowed"], report["blocked"]) == ("observe", 3, 2)
    assert where(report) == [(2, "class.customer-content-shared"), (4, "input.malformed-json")]


def test_when_enforce_mode_finds_a_violation_then_out_is_not_written(
    kg: Any, mixed: tuple[Path, list[bytes], list[bool]], tmp_path: Path
) -> None:
    path, _, _ = mixed
    before = sorted(p.name for p in tmp_path.iterdir())

    result = kg(
        "scan", path, "--sink", "shared-training", "--mode", "enforce", "--out", "out.jsonl"
    )

    assert result.code == 1
    assert not (tmp_path / "out.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temp file left
    assert "not written" in result.err


def test_when_enforce_mode_finds_no_violation_then_out_holds_every_line(
    kg: Any, home: Path, ring: KeyRing, tmp_path: Path
) -> None:
    lines = operator_lines(home, ring, [{"id": i, "text": f"synthetic {i}"} for i in range(4)])
    path = tmp_path / "ops.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))

    result = kg("scan", path, "--sink", "shared-training", "--out", "out.jsonl")

    assert result.code == 0
    assert (tmp_path / "out.jsonl").read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: {**r, "text": "public 1, edited"},
        lambda r: {**r, "extra": "appended field"},
        lambda r: {k: v for k, v in r.items() if k != "text"},
        lambda r: {**r, "id": 1.5},
    ],
    ids=["changed-value", "added-field", "removed-field", "changed-type"],
)
def test_when_sealed_operator_data_is_altered_then_scan_blocks_the_copy(
    tamper: Any, kg: Any, home: Path, ring: KeyRing, tmp_path: Path
) -> None:
    lines = operator_lines(home, ring, [{"id": i, "text": f"public {i}"} for i in range(3)])
    copy = orjson.dumps(tamper(json.loads(lines[1])))
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in [*lines, copy]))

    result = kg("scan", path, "--sink", "shared-training", "--report", "report.json")

    assert result.code == 1
    report = load(tmp_path / "report.json")
    assert where(report) == [(4, "seal.digest-mismatch")]
    assert report["by_rule"] == {"allow.operator-public": 3, "seal.digest-mismatch": 1}
