"""Shared fixtures: a guard on a fresh state directory with a fresh key."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from kg_testing import PG_SCHEMAS, add_signer, make_guard, state_store_env
from otel_support import Sdk
from ray_turns import RayTurns

from kairo_guard import Guard, KeyRing
from kairo_guard.cli.main import main

pytest_plugins = [
    "cli_fixtures",  # tests/support/cli_fixtures.py: the CLI tests' fixtures
    "store_fixtures",  # tests/support/store_fixtures.py: a fresh store on each backend
]

# Subprocesses started by tests (examples, CLI runs) import the test helpers too.
_HERE = Path(__file__).parent
_PATHS = (str(_HERE / "support"), str(_HERE.parent / "examples"), os.environ.get("PYTHONPATH", ""))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in _PATHS if p)
# Guarded apps in tests start no indexer of their own: a check at a shared sink indexes
# the spool itself (the recovery path); tests of the indexer modes ask for one.
os.environ.setdefault("KAIRO_GUARD_INDEXER", "none")
# ... and write the spool with the production default, the native writer thread (the
# tests of the writer process and the Python thread ask for those).
os.environ.setdefault("KAIRO_GUARD_SPOOL_WRITER", "native")
# Ray puts its sockets under the temporary directory, and an AF_UNIX path may not
# exceed 107 bytes: tests that run in a deep TMPDIR (the docs blocks) would fail to start it
os.environ.setdefault("RAY_TMPDIR", "/tmp")


@pytest.fixture(autouse=True)
def _fast_api_key_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """API keys made in tests are hashed with bcrypt's least work factor (a hash records
    its own, so they verify as fast); ``test_middleware`` checks the production one."""
    from kairo_guard.ingest import apikeys

    monkeypatch.setattr(apikeys, "BCRYPT_ROUNDS", 4)


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
    env = {
        "KAIRO_GUARD_HOME": str(home),
        "KAIRO_GUARD_KEY": ring.to_env_value(),
    }
    for name in (
        "KAIRO_GUARD_SIGNER_KEY",
        "KAIRO_GUARD_VERIFY_KEYS",
        "KAIRO_GUARD_CONFIG",
        "KAIRO_GUARD_MODE",
        "KAIRO_GUARD_DB_URL",
        "KAIRO_GUARD_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name, value in state_store_env(home).items():  # the PostgreSQL pass
        env[name] = value
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    add_signer(home)  # this state directory's vetting key (signer.json)
    return env


@pytest.fixture(scope="session", autouse=True)
def _drop_pg_schemas() -> Iterator[None]:
    """The PostgreSQL pass: drop the schemas its state directories used."""
    yield
    if PG_SCHEMAS:
        from store_backends import pg_admin

        with pg_admin() as admin:
            for schema in sorted(PG_SCHEMAS):
                admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(scope="session")
def ray_turns(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> RayTurns:
    """Turns at running a Ray cluster, shared by the session's pytest-xdist workers (a
    lock file in the directory above each worker's own base temporary directory)."""
    if worker_id == "master":  # one process: no other cluster to wait for
        return RayTurns(None)
    return RayTurns(tmp_path_factory.getbasetemp().parent / "ray-cluster.lock")


@pytest.fixture
def ray_turn(ray_turns: RayTurns) -> Iterator[None]:
    """For a test that starts a Ray cluster of its own: no other worker runs one meanwhile."""
    with ray_turns.turn():
        yield


class Run(NamedTuple):
    """What one in-process ``kairo-guard`` run returned and printed."""

    code: int
    out: str
    err: str


@pytest.fixture
def kg(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run ``kairo-guard ARGS`` in this process (with ``cli_env``); return a :class:`Run`."""

    def run(*args: str | Path) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def home(cli_env: dict[str, str]) -> Path:
    """The CLI's state directory."""
    return Path(cli_env["KAIRO_GUARD_HOME"])


@pytest.fixture
def sdk() -> Sdk:
    """A real OpenTelemetry SDK: in-memory span exporter and metric reader."""
    return Sdk()


@pytest.fixture
def traced(tmp_path: Path, ring: KeyRing, sdk: Sdk) -> Iterator[Guard]:
    """A guard (PII gate off) whose spans and metrics go to ``sdk``."""
    with make_guard(
        tmp_path / "state",
        ring=ring,
        pii_gate=False,
        tracer_provider=sdk.tracer_provider,
        meter_provider=sdk.meter_provider,
    ) as g:
        yield g
