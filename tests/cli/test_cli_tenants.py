"""``kairo-guard tenants add|revoke-keys``: API keys for the ingestion middleware."""

from __future__ import annotations

from pathlib import Path

import pytest
from kg_testing import make_guard

from kairo_guard import KeyRing
from kairo_guard.cli.main import main


@pytest.mark.sqlite_only
def test_tenants_add_prints_a_working_key_once_and_revoke_disables_it(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from kairo_guard.ingest.apikeys import ApiKeyVerifier

    assert main(["tenants", "add", "acme"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("kgk.")
    home = Path(cli_env["KAIRO_GUARD_HOME"])
    ring = KeyRing.from_env_value(cli_env["KAIRO_GUARD_KEY"])
    with make_guard(home, ring=ring) as guard:
        assert ApiKeyVerifier(guard.store).verify(key) == "acme"
        assert key.split(".")[2].encode() not in (home / "state.sqlite3").read_bytes()
    assert main(["tenants", "revoke-keys", "acme"]) == 0
    with make_guard(home, ring=ring) as guard:
        assert ApiKeyVerifier(guard.store).verify(key) is None
    assert main(["tenants", "revoke-keys", "acme"]) == 1
    assert main(["tenants", "add", "not a tenant"]) == 2
