"""``kairo-guard agreements``: grants, scopes, expiry and revocation, as scans see them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from cli_support import load
from kg_testing import make_guard

from kairo_guard import KeyRing


def test_when_agreements_change_then_tenant_fine_tune_follows_them(
    kg: Any, acme_sealed: Path, tmp_path: Path
) -> None:
    def scan(sink: str) -> tuple[int, dict[str, int]]:
        code = kg("scan", acme_sealed, "--sink", sink, "--report", "r.json").code
        return code, load(tmp_path / "r.json")["by_rule"]

    assert scan("tenant-fine-tune:acme") == (1, {"agreement.inactive": 3})
    assert kg("agreements", "grant", "acme").code == 0
    assert scan("tenant-fine-tune:acme") == (0, {"allow.tenant-own-content": 3})
    assert scan("shared-fine-tune") == (1, {"class.customer-content-shared": 3})
    assert kg("agreements", "grant", "globex").code == 0
    assert scan("tenant-fine-tune:globex") == (1, {"tenant.cross-tenant": 3})
    revoked = kg("agreements", "revoke", "acme")
    assert revoked.code == 0
    assert "revoked 1" in revoked.out
    assert scan("tenant-fine-tune:acme") == (1, {"agreement.inactive": 3})


def test_when_an_agreement_scope_excludes_fine_tuning_then_fine_tune_stays_blocked(
    kg: Any, acme_sealed: Path, tmp_path: Path
) -> None:
    assert kg("agreements", "grant", "acme", "--scope", "evaluation").code == 0
    listed = kg("agreements", "list", "--json")
    assert '"scope":"evaluation"' in listed.out
    code = kg("scan", acme_sealed, "--sink", "tenant-fine-tune:acme").code
    assert code == 1
    assert kg("agreements", "grant", "acme", "--scope", "evaluation,fine-tune").code == 0
    assert kg("scan", acme_sealed, "--sink", "tenant-fine-tune:acme").code == 0
    bad = kg("agreements", "grant", "acme", "--scope", "Fine Tune; drop")
    assert bad.code == 2
    assert "invalid agreement scope" in bad.err


# -- agreements ----------------------------------------------------------------------


def test_when_agreements_are_listed_then_each_shows_active_revoked_or_expired(
    kg: Any, home: Path, ring: KeyRing
) -> None:
    now = time.time()
    assert kg("agreements", "grant", "acme", "--for", "1d", "--reference", "DPA-7").code == 0
    assert kg("agreements", "grant", "globex").code == 0
    assert kg("agreements", "revoke", "globex").code == 0
    with make_guard(home, ring=ring, clock=lambda: now - 1000) as past:
        past.grant_agreement("initech", expires_at=now - 500)

    table = kg("agreements", "list")
    as_json = kg("agreements", "list", "--json")

    assert table.code == as_json.code == 0
    rows = {d["tenant"]: d for d in map(json.loads, as_json.out.splitlines())}
    assert {t: d["state"] for t, d in rows.items()} == {
        "acme": "active",
        "globex": "revoked",
        "initech": "expired",
    }
    assert rows["acme"]["expires_at"] == pytest.approx(now + 86400, abs=60)
    assert rows["acme"]["reference"] == "DPA-7"
    states = {line.split()[1]: line.split()[2] for line in table.out.splitlines()}
    assert states == {"acme": "active", "globex": "revoked", "initech": "expired"}
    only = kg("agreements", "list", "--json", "--tenant", "globex")
    assert [json.loads(line)["tenant"] for line in only.out.splitlines()] == ["globex"]


@pytest.mark.parametrize(
    "args",
    [
        ["--expires", "2001-01-01"],
        ["--expires", "2001-01-01T00:00:00+00:00"],
        ["--expires", "next tuesday"],
        ["--for", "forever"],
        ["--for", "0d"],
        ["--for", "1d", "--expires", "2099-01-01"],
    ],
)
def test_when_grant_expiry_is_past_or_malformed_then_exit_2_and_nothing_is_granted(
    args: list[str], kg: Any
) -> None:
    result = kg("agreements", "grant", "acme", *args)

    assert result.code == 2
    assert result.err.startswith("error:")
    assert kg("agreements", "list", "--json").out == ""


def test_when_revoking_a_tenant_without_agreements_then_exit_1(kg: Any) -> None:
    result = kg("agreements", "revoke", "acme")

    assert result.code == 1
    assert "revoked 0" in result.out
