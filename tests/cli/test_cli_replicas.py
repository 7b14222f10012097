"""``kairo-guard replicas list|retire``: a replica gone for good stops blocking checks
once retired; a running one is not retired by mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kg_testing import make_guard

from kairo_guard import KeyRing
from kairo_guard.cli.main import main
from kairo_guard.core.exceptions import IndexLagging
from kairo_guard.detect.coverage import wait_replicas


def _silence(home: Path, ring: KeyRing, replica: str, seconds: float) -> None:
    """Make ``replica`` look unheard of for ``seconds`` (as if its host died then)."""
    with make_guard(home, ring=ring, pii_gate=False) as g:
        g.store.db.count(  # type: ignore[attr-defined]  # (both stores' SQL runner)
            "UPDATE ingest_coverage SET heartbeat = heartbeat - ? WHERE replica_id = ?",
            (seconds, replica),
        )


def test_a_dead_replica_blocks_checks_until_retired_and_the_retirement_is_audited(
    cli_env: dict[str, str], ring: KeyRing, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Path(cli_env["KAIRO_GUARD_HOME"])
    with make_guard(home, ring=ring, pii_gate=False) as g:
        own = g.settings.audit_log_id
        g.store.publish_coverage(own, None)
        g.store.publish_coverage("replica-b", None)  # started, accepted, then died
    assert main(["replicas", "list"]) == 0
    listed = capsys.readouterr().out
    assert "replica-b" in listed
    assert "nothing yet" in listed
    assert f"{own}" in listed
    assert "(this state directory)" in listed

    # a replica heard from a moment ago is running: refused without --force
    assert main(["replicas", "retire", "replica-b"]) == 2
    assert "heard from" in capsys.readouterr().err
    assert main(["replicas", "retire", "no-such-replica"]) == 2

    _silence(home, ring, "replica-b", 600)
    lagging = pytest.raises(IndexLagging, match=r"replica-b \(last heard 6\d\d s ago\)")
    with make_guard(home, ring=ring, pii_gate=False) as g, lagging:
        wait_replicas(g.store, own, 0.05)
    assert main(["replicas", "retire", "replica-b"]) == 0
    with make_guard(home, ring=ring, pii_gate=False) as g:
        wait_replicas(g.store, own, 0.05)  # nothing to wait for any more
        assert [r.replica_id for r in g.store.replicas()] == [own]
    entries = [
        json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()
    ]
    [retired] = [e for e in entries if e.get("event") == "replica.retire"]
    assert retired["replica"] == "replica-b"
    assert retired["forced"] is False
    assert retired["last_heard_s"] >= 600


def test_force_retires_a_replica_heard_from_lately(cli_env: dict[str, str], ring: KeyRing) -> None:
    home = Path(cli_env["KAIRO_GUARD_HOME"])
    with make_guard(home, ring=ring, pii_gate=False) as g:
        g.store.publish_coverage("replica-c", None)
    assert main(["replicas", "retire", "replica-c", "--force"]) == 0
    with make_guard(home, ring=ring, pii_gate=False) as g:
        assert "replica-c" not in g.store.coverage()
