"""Integers past 64 bits and a 50 MB line: refused or blocked exactly, never held whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bad_lines import (
    BIG_INT,
    LABEL,
    MB,
    SCAN,
    SCRIPT,
    Minter,
    no_traceback,
    run_cli,
    where,
    write_lines,
)
from cli_support import load
from kg_testing import sealed_record

from kairo_guard.cli.main import main

# -- integers past 64 bits -----------------------------------------------------------


def test_when_a_seal_for_a_rounded_value_sits_on_a_big_integer_then_scan_blocks_it(
    minter: Minter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seal = sealed_record(minter.guard, {"n": float(BIG_INT)}, data_class="operator_public")
    minter.guard.close()
    lines = [b'{"n":' + BIG_INT + b',"_kairo":"' + seal["_kairo"].encode() + b'"}']
    path = write_lines(tmp_path / "in.jsonl", lines)

    code = main([*SCAN, str(path), "--report", "report.json"])

    assert load(tmp_path / "report.json")["allowed"] == 0
    assert code == 1


@pytest.mark.parametrize("number", [BIG_INT, b"-" + BIG_INT, b"18446744073709551617"])
def test_when_an_integer_does_not_survive_the_round_trip_then_label_refuses_it(
    number: bytes, cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "in.jsonl", [b'{"n": ' + number + b"}"])

    code = main([*LABEL, str(path), "--out", "out.jsonl", "--report", "report.json"])

    assert code == 2
    assert where(load(tmp_path / "report.json")["refusals"]) == [(1, "input.inexact-number")]
    assert (tmp_path / "out.jsonl").read_bytes() == b""


@pytest.mark.parametrize("number", [b"18446744073709551616", b"-36893488147419103232"])
def test_when_a_big_integer_is_exactly_a_double_then_label_still_refuses_it(
    number: bytes, cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "in.jsonl", [b'{"n": ' + number + b"}"])

    code = main([*LABEL, str(path), "--out", "out.jsonl", "--report", "report.json"])

    assert where(load(tmp_path / "report.json")["refusals"]) == [(1, "input.inexact-number")]
    assert code == 2


def test_when_a_float_has_more_digits_than_a_double_then_label_writes_the_double(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON numbers are doubles: label writes the canonical form, which scan verifies."""
    text = b'{"s": "x", "n": 0.10000000000000000555111512312578}'
    path = write_lines(tmp_path / "in.jsonl", [text])

    code = main([*LABEL, str(path), "--out", "out.jsonl"])

    assert code == 0
    out = (tmp_path / "out.jsonl").read_bytes()
    assert out.startswith(b'{"n":0.1,"s":"x","_kairo":"kg1.')
    assert main(["agreements", "grant", "acme"]) == 0
    assert main(["scan", "out.jsonl", "--sink", "tenant-fine-tune:acme"]) == 0
    assert main(["scan", "out.jsonl", "--sink", "tenant-fine-tune:globex"]) == 1


# -- a 50 MB line --------------------------------------------------------------------


def peak_rss_kb(*args: str | Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the CLI under a fresh parent and return its peak resident set size."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.call(sys.argv[1:])\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "sys.stderr.write(f'\\nPEAK_RSS_KB={peak}\\n')\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        errors="replace",
        env=dict(os.environ),
        timeout=120,
        check=False,
    )
    peak = int(proc.stderr.rsplit("PEAK_RSS_KB=", 1)[1])
    return proc, peak


def huge_line() -> bytes:
    return b'{"blob": "' + b"x" * (50 * MB) + b'"}'


def test_when_scan_meets_a_50_mb_line_then_it_blocks_it_without_holding_it(
    minter: Minter, tmp_path: Path
) -> None:
    good = [minter.operator({"id": 1}), minter.operator({"id": 3})]
    minter.guard.close()
    small = write_lines(tmp_path / "small.jsonl", good)
    path = write_lines(tmp_path / "in.jsonl", [good[0], huge_line(), good[1]])

    _, baseline = peak_rss_kb(*SCAN, small)
    proc, peak = peak_rss_kb(*SCAN, path, "--report", tmp_path / "report.json")

    no_traceback(proc)
    assert proc.returncode == 1
    report = load(tmp_path / "report.json")
    assert where(report["violations"]) == [(2, "input.too-large")]
    assert "max_record_bytes" in report["violations"][0]["reason"]
    assert report["allowed"] == 2
    assert peak - baseline < 50 * 1024, "the 50 MB line was held in memory"


def test_when_label_meets_a_50_mb_line_then_it_refuses_it_and_seals_the_rest(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    lines = [b'{"id": 1}', huge_line(), b'{"id": 3}']
    path = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"

    proc = run_cli(*LABEL, path, "--out", out, "--report", tmp_path / "report.json")

    no_traceback(proc)
    assert proc.returncode == 2
    assert where(load(tmp_path / "report.json")["refusals"]) == [(2, "input.too-large")]
    assert "line 2: input.too-large" in proc.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [1, 3]
