"""The documented fuzz run: every harness for a number of executions, one after another.

``python -m fuzz.campaign [--runs N] [--seed S] [target ...]`` (``make fuzz``) runs
``python -m fuzz <target>`` for each target (each takes a core: they run in turn), with
its seed corpus, a per-input timeout (a hang is a finding) and a memory cap, and prints
a table: executions, wall time, executions per second, findings. What libFuzzer
discovers goes to ``build/fuzz/<target>/`` (its log, the inputs it kept, any crashing
input), never into the reviewed seeds.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fuzz.harness import CORPUS
from fuzz.targets import TARGETS

BUILD = Path(__file__).resolve().parent.parent / "build" / "fuzz"
TIMEOUT_S = 10
"""Seconds one input may take before libFuzzer reports a hang."""
RSS_LIMIT_MB = 4096
ARTIFACTS = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")
"""What libFuzzer names the inputs it stops on (a finding, a hang, memory)."""
MAX_LEN = 10_240
"""Longest input libFuzzer makes (the longest seeds: a baggage header past 8 KiB)."""


@dataclass(frozen=True)
class Outcome:
    """One harness's run."""

    target: str
    command: str
    executions: int
    seconds: float
    exec_per_s: float
    peak_rss_mb: int
    slowest_s: int
    status: int
    findings: str


def command(target: str, runs: int, seed: int) -> list[str]:
    """The command line that fuzzes ``target``."""
    work = BUILD / target
    return [
        sys.executable,
        "-m",
        "fuzz",
        target,
        f"-runs={runs}",
        f"-seed={seed}",
        f"-timeout={TIMEOUT_S}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={MAX_LEN}",
        "-print_final_stats=1",
        f"-artifact_prefix={work}/",
        str(work / "corpus"),
        str(CORPUS / target),
    ]


def _stat(log: str, name: str) -> int:
    found = re.search(rf"stat::{name}:\s+(\d+)", log)
    return int(found.group(1)) if found else 0


def run(target: str, runs: int, seed: int) -> Outcome:
    """Fuzz ``target`` for ``runs`` executions; its log goes to ``build/fuzz/<target>.log``."""
    (BUILD / target / "corpus").mkdir(parents=True, exist_ok=True)
    argv = command(target, runs, seed)
    log_path = BUILD / f"{target}.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        status = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.monotonic() - started
    log_text = log_path.read_text(errors="replace")
    executions = _stat(log_text, "number_of_executed_units")
    known = sorted(set(re.findall(r"KNOWN FINDING (F\d+)", log_text)))
    crashes = sorted(p.name for p in (BUILD / target).iterdir() if p.name.startswith(ARTIFACTS))
    notes = [f"NEW: {' '.join(crashes)}"] if crashes else []
    notes += [f"known {k} recurred" for k in known]
    shown = " ".join(argv[1:]).replace(str(BUILD.parent.parent) + "/", "")
    return Outcome(
        target,
        f"python {shown}",
        executions,
        seconds,
        executions / seconds if seconds else 0.0,
        _stat(log_text, "peak_rss_mb"),
        _stat(log_text, "slowest_unit_time_sec"),
        status,
        ", ".join(notes) or "none",
    )


def main(argv: list[str]) -> int:
    """Run the campaign; exit 1 if any harness failed (a finding, a hang, a crash)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="executions per harness")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (all)")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}: choose among {list(TARGETS)}")
    print(
        "| target | command | executions | time (s) | exec/s | slowest input (s) | peak RSS (MB) "
        "| exit | findings |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    failed = False
    for target in args.targets or TARGETS:
        o = run(target, args.runs, args.seed)
        failed |= o.status != 0 or o.executions < args.runs
        print(
            f"| {o.target} | `{o.command}` | {o.executions:,} | {o.seconds:,.0f} | "
            f"{o.exec_per_s:,.0f} | {o.slowest_s} | {o.peak_rss_mb} | {o.status} | {o.findings} |",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
