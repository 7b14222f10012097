"""The ``kairo-guard`` program: help, the demo, ``python -m``, and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from cli_support import SCRIPT

# -- help, demo ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["keys"],
        ["keys", "init"],
        ["keys", "rotate"],
        ["config"],
        ["config", "check"],
        ["label"],
        ["scan"],
        ["agreements"],
        ["agreements", "grant"],
        ["agreements", "revoke"],
        ["agreements", "list"],
        ["audit"],
        ["audit", "verify"],
        ["demo"],
    ],
    ids=lambda c: " ".join(c) or "kairo-guard",
)
def test_when_help_is_asked_then_exit_0_with_usage(command: list[str], kg: Any) -> None:
    result = kg(*command, "--help")

    assert result.code == 0
    assert "Usage:" in result.out
    assert " ".join(command) in result.out


def test_when_demo_runs_then_the_shared_set_is_blocked(cli_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [str(SCRIPT), "demo"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "4 records -> 0 allowed, 4 blocked" in proc.stdout
    assert "customer content stayed out of shared training" in proc.stdout
    assert "acme may call it: True; globex: False" in proc.stdout
    assert "record 0: tenant.erased" in proc.stdout


def test_when_run_as_python_module_then_the_cli_works(cli_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kairo_guard.cli.main", "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )

    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout
