"""Shared fixtures: a guard on a fresh state directory with a fresh key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kairo_guard import Guard, KeyRing
from kairo_guard.testing import make_guard


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def guard(tmp_path: Path, ring: KeyRing) -> Iterator[Guard]:
    # The PII gate has its own tests (test_pii*.py); here it would only add false
    # positives on generated text to tests of everything else.
    with make_guard(tmp_path / "state", ring=ring, pii_gate=False) as g:
        yield g


@pytest.fixture
def pii_guard(tmp_path: Path, ring: KeyRing) -> Iterator[Guard]:
    """A guard with the PII gate on, for the tests of the gate at sinks."""
    with make_guard(tmp_path / "pii-state", ring=ring, pii_gate=True) as g:
        yield g


@pytest.fixture
def cli_env(tmp_path: Path, ring: KeyRing, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for running the CLI against a fresh state directory and key."""
    home = tmp_path / "cli-state"
    env = {"KAIRO_GUARD_HOME": str(home), "KAIRO_GUARD_KEY": ring.to_env_value()}
    for name in (
        "KAIRO_GUARD_CONFIG",
        "KAIRO_GUARD_MODE",
        "KAIRO_GUARD_DB_URL",
        "KAIRO_GUARD_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return env
