"""No records, no file, no key, no such sink: a clear message and the right exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_lines import LABEL, SCAN, no_traceback, run_cli, write_lines
from cli_support import load

from kairo_guard.cli.main import main

# -- no records, no file, no key, no such sink ---------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n", b"\n\n   \n\t\n"], ids=["empty", "nl", "blanks"])
def test_when_input_has_no_records_then_scan_says_so_and_exits_0(
    content: bytes, cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(content)

    assert main([*SCAN, "in.jsonl", "--report", "report.json"]) == 0

    assert "no records" in capsys.readouterr().out
    report = load(tmp_path / "report.json")
    assert (report["total"], report["blocked"], report["violations"]) == (0, 0, [])


@pytest.mark.parametrize("content", [b"", b"\n\n   \n"], ids=["empty", "blanks"])
def test_when_input_has_no_records_then_label_says_so_and_writes_an_empty_file(
    content: bytes, cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(content)

    assert main([*LABEL, "in.jsonl", "--out", "out.jsonl"]) == 0

    assert "no records" in capsys.readouterr().out
    assert (tmp_path / "out.jsonl").read_bytes() == b""


@pytest.mark.parametrize("command", ["scan", "label"])
@pytest.mark.parametrize(
    ("target", "message"),
    [("missing.jsonl", "No such file"), (".", "is a directory")],
    ids=["missing", "directory"],
)
def test_when_input_cannot_be_read_then_exit_2_with_a_clear_message(
    command: str, target: str, message: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    args = SCAN if command == "scan" else LABEL
    extra = ["--out", "out.jsonl"] if command == "label" else []

    proc = run_cli(args[0], target, *args[1:], *extra)

    no_traceback(proc)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("command", ["scan", "label"])
def test_when_there_is_no_key_then_exit_2_pointing_at_keys_init(
    command: str, cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAIRO_GUARD_KEY")
    write_lines(tmp_path / "in.jsonl", [b'{"id": 1}'])
    args = [*SCAN, "in.jsonl"] if command == "scan" else [*LABEL, "in.jsonl", "--out", "out.jsonl"]

    proc = run_cli(*args)

    no_traceback(proc)
    assert proc.returncode == 2
    assert "keys init" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ("shared-everything", "unknown sink"),
        ("tenant-fine-tune", "needs a valid tenant"),
        ("tenant-fine-tune:not a tenant!", "needs a valid tenant"),
    ],
)
def test_when_scan_sink_is_unknown_then_exit_2(
    sink: str, message: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    write_lines(tmp_path / "in.jsonl", [b'{"id": 1}'])

    proc = run_cli("scan", "in.jsonl", "--sink", sink, "--report", "report.json")

    no_traceback(proc)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "report.json").exists()
