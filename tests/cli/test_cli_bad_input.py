"""Bad input through the CLI: every kind of bad line gets a clear verdict, never a traceback.

``scan IN --sink shared-training`` and ``label IN --tenant acme --class customer_content``
each see malformed JSON, invalid UTF-8, a 50 MB line, JSON nested 100,000 deep, records
without a seal, lines that are not objects, forged and foreign seals, and integers past
64 bits. Each bad line ends in exit 1 (a blocked or refused record) or exit 2 (unreadable
input), is listed in the report with its 1-based line number and rule, and leaves the
verdicts on the good lines around it intact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from kg_testing import make_guard, sealed_record

from kairo_guard import Guard, KeyRing
from kairo_guard.cli.main import main

SCRIPT = Path(sys.executable).parent / "kairo-guard"
BIG_INT = b"123456789012345678901234567890"
MB = 1024 * 1024
SCAN = ("scan", "--sink", "shared-training")
LABEL = ("label", "--tenant", "acme", "--class", "customer_content")


# -- helpers -------------------------------------------------------------------------


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the installed ``kairo-guard`` script in a real process (cwd and env as set)."""
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        errors="replace",
        env=dict(os.environ),
        timeout=120,
        check=False,
    )


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stdout
    assert "internal error" not in proc.stderr


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def where(entries: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(e["line"], e["rule"]) for e in entries]


@dataclass
class Minter:
    """Makes sealed lines with the CLI's own key ring and state directory."""

    guard: Guard

    def operator(self, record: dict[str, Any]) -> bytes:
        return orjson.dumps(sealed_record(self.guard, record, data_class="operator_public"))

    def customer(self, record: dict[str, Any], tenant: str = "acme") -> dict[str, Any]:
        return self.guard.label_record(record, tenant=tenant)


@pytest.fixture
def minter(cli_env: dict[str, str], ring: KeyRing) -> Iterator[Minter]:
    with make_guard(Path(cli_env["KAIRO_GUARD_HOME"]), ring=ring) as guard:
        yield Minter(guard)


def forged_line(m: Minter) -> bytes:
    """A payload claiming operator_public for exactly this content, with a tag copied
    from a genuine seal of the CLI's key."""
    content = {"text": "acme's secret plan"}
    genuine = m.customer(content)["_kairo"]
    home = Path(m.guard.settings.home).parent / "forger"
    with make_guard(home, ring=KeyRing.generate("k1")) as forger:
        claim = sealed_record(forger, content, data_class="operator_public")["_kairo"]
    forged = claim.rsplit(".", 1)[0] + "." + genuine.rsplit(".", 1)[1]
    return orjson.dumps({**content, "_kairo": forged})


def truncated_line(m: Minter) -> bytes:
    record = sealed_record(m.guard, {"text": "public"}, data_class="operator_public")
    return orjson.dumps({**record, "_kairo": record["_kairo"][:-5]})


def foreign_key_line(key_id: str) -> Callable[[Minter], bytes]:
    """operator_public data sealed by a key the CLI does not hold."""

    def make(m: Minter) -> bytes:
        home = Path(m.guard.settings.home).parent / f"other-{key_id}"
        with make_guard(home, ring=KeyRing.generate(key_id)) as other:
            record = sealed_record(other, {"text": "public"}, data_class="operator_public")
        return orjson.dumps(record)

    return make


def big_int_under_seal(m: Minter) -> bytes:
    """A valid operator seal for {"n": 1}, moved onto a line whose n is past 64 bits."""
    seal: str = sealed_record(m.guard, {"n": 1}, data_class="operator_public")["_kairo"]
    return b'{"n":' + BIG_INT + b',"_kairo":"' + seal.encode() + b'"}'


@dataclass(frozen=True)
class Bad:
    """One kind of bad line and the rule each command must give it."""

    make: Callable[[Minter], bytes]
    scan_rule: str
    label_rule: str


BAD: dict[str, Bad] = {
    "malformed-json": Bad(
        lambda m: b'{"text": "unterminated', "input.malformed-json", "input.malformed-json"
    ),
    "trailing-garbage": Bad(
        lambda m: b'{"a": 1} x', "input.malformed-json", "input.malformed-json"
    ),
    "invalid-utf8": Bad(
        lambda m: b'{"text": "caf\xe9 \xff"}', "input.invalid-utf8", "input.invalid-utf8"
    ),
    "nested-100000-deep": Bad(
        lambda m: b"[" * 100_000 + b"]" * 100_000, "input.too-deep", "input.too-deep"
    ),
    "json-string": Bad(lambda m: b'"hello"', "seal.missing", "input.not-an-object"),
    "json-array": Bad(lambda m: b"[1,2]", "seal.missing", "input.not-an-object"),
    "forged-seal": Bad(forged_line, "seal.invalid", "label.already-sealed"),
    "truncated-seal": Bad(truncated_line, "seal.invalid", "label.already-sealed"),
    "seal-from-another-key": Bad(foreign_key_line("k1"), "seal.invalid", "label.already-sealed"),
    "seal-from-unknown-key-id": Bad(foreign_key_line("k9"), "seal.invalid", "label.already-sealed"),
    "seal-not-a-string": Bad(
        lambda m: b'{"text": "x", "_kairo": {"class": "operator_public"}}',
        "seal.invalid",
        "label.already-sealed",
    ),
    "int-past-64-bits": Bad(
        lambda m: b'{"n": ' + BIG_INT + b"}", "seal.missing", "input.inexact-number"
    ),
    "int-past-64-bits-under-a-seal": Bad(
        big_int_under_seal, "seal.digest-mismatch", "input.inexact-number"
    ),
}


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


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
