"""Bad lines through the CLI: each gets a clear verdict on its own line, never a traceback.

``scan IN --sink shared-training`` and ``label IN --tenant acme --class customer_content``
each see malformed JSON, invalid UTF-8, JSON nested 100,000 deep, records without a
seal, lines that are not objects, and forged and foreign seals (the kinds of
``bad_lines.BAD``). Each bad line ends in exit 1 (a blocked or refused record) or exit 2
(unreadable input), is listed in the report with its 1-based line number and rule, and
leaves the verdicts on the good lines around it intact.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from bad_lines import BAD, LABEL, SCAN, Minter, no_traceback, run_cli, where, write_lines
from cli_support import load

from kairo_guard.cli.main import main

# -- one bad line between two good ones, in a real process ---------------------------


@pytest.mark.parametrize("case", list(BAD))
def test_when_scan_meets_a_bad_line_then_it_blocks_that_line_only(
    case: str, minter: Minter, tmp_path: Path
) -> None:
    bad = BAD[case]
    good = [minter.operator({"id": 1, "text": "public"}), minter.operator({"id": 3})]
    path = write_lines(tmp_path / "in.jsonl", [good[0], bad.make(minter), good[1]])
    minter.guard.close()

    proc = run_cli(*SCAN, path, "--report", tmp_path / "report.json")

    no_traceback(proc)
    assert proc.returncode == 1
    report = load(tmp_path / "report.json")
    assert (report["sink"], report["total"], report["allowed"], report["blocked"]) == (
        "shared-training",
        3,
        2,
        1,
    )
    assert where(report["violations"]) == [(2, bad.scan_rule)]
    assert report["violations"][0]["reason"]
    assert report["by_rule"] == {"allow.operator-public": 2, bad.scan_rule: 1}
    assert f"line 2: {bad.scan_rule}" in proc.stdout


@pytest.mark.parametrize("case", list(BAD))
def test_when_label_meets_a_bad_line_then_it_refuses_that_line_only(
    case: str, minter: Minter, tmp_path: Path
) -> None:
    bad = BAD[case]
    good = [{"id": 1, "text": "acme doc"}, {"id": 3, "text": "acme memo"}]
    lines = [orjson.dumps(good[0]), bad.make(minter), orjson.dumps(good[1])]
    path = write_lines(tmp_path / "in.jsonl", lines)
    minter.guard.close()
    out = tmp_path / "out.jsonl"

    proc = run_cli(*LABEL, path, "--out", out, "--report", tmp_path / "report.json")

    no_traceback(proc)
    assert proc.returncode == (2 if bad.label_rule.startswith("input.") else 1)
    report = load(tmp_path / "report.json")
    assert (report["total"], report["sealed"], report["refused"]) == (3, 2, 1)
    assert where(report["refusals"]) == [(2, bad.label_rule)]
    assert f"line 2: {bad.label_rule}" in proc.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "_kairo"} for r in written] == good
    assert all(r["_kairo"].startswith("kg1.") for r in written)


def test_when_record_has_no_seal_then_scan_blocks_it_and_label_seals_it(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "in.jsonl", [b'{"text": "no provenance"}'])

    assert main([*SCAN, str(path), "--report", "report.json"]) == 1
    assert where(load(tmp_path / "report.json")["violations"]) == [(1, "seal.missing")]
    assert main([*LABEL, str(path), "--out", "out.jsonl"]) == 0
    (sealed,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sealed["text"] == "no provenance"
    assert sealed["_kairo"].startswith("kg1.")


# -- every kind at once: line numbers stay right -------------------------------------


def test_when_scan_meets_every_bad_kind_then_each_is_reported_on_its_own_line(
    minter: Minter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [minter.operator({"id": 0})]
    expected = []
    for i, bad in enumerate(BAD.values(), start=1):
        lines += [bad.make(minter), minter.operator({"id": i})]
        expected.append((2 * i, bad.scan_rule))
    path = write_lines(tmp_path / "in.jsonl", lines)
    minter.guard.close()

    assert main([*SCAN, str(path), "--report", "report.json"]) == 1

    report = load(tmp_path / "report.json")
    assert where(report["violations"]) == expected
    assert report["allowed"] == len(BAD) + 1
    assert report["total"] == len(lines)


def test_when_label_meets_every_bad_kind_then_each_is_reported_on_its_own_line(
    minter: Minter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [orjson.dumps({"id": 0})]
    expected = []
    for i, bad in enumerate(BAD.values(), start=1):
        lines += [bad.make(minter), orjson.dumps({"id": i})]
        expected.append((2 * i, bad.label_rule))
    path = write_lines(tmp_path / "in.jsonl", lines)
    minter.guard.close()

    assert main([*LABEL, str(path), "--out", "out.jsonl", "--report", "report.json"]) == 2

    assert where(load(tmp_path / "report.json")["refusals"]) == expected
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in written] == list(range(len(BAD) + 1))


def test_when_label_input_has_blank_lines_then_refusals_keep_file_line_numbers(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": 1}\n\n{"broken\n   \n"hello"\n')

    assert main([*LABEL, str(path), "--out", "out.jsonl", "--report", "report.json"]) == 2

    refusals = load(tmp_path / "report.json")["refusals"]
    assert where(refusals) == [(3, "input.malformed-json"), (5, "input.not-an-object")]


def test_when_scan_input_has_blank_lines_then_violations_keep_file_line_numbers(
    minter: Minter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = minter.operator({"id": 1})
    minter.guard.close()
    path = tmp_path / "in.jsonl"
    path.write_bytes(good + b'\n\n{"broken\n   \n' + good + b'\n{"unsealed": 1}\n')

    assert main([*SCAN, str(path), "--report", "report.json"]) == 1

    violations = load(tmp_path / "report.json")["violations"]
    assert where(violations) == [(3, "input.malformed-json"), (6, "seal.missing")]
