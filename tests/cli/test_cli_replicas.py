"""``kairo-guard replicas list|retire``: a replica gone for good stops blocking checks
once retired; a running one is not retired by mistake."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from kg_testing import make_guard

from kairo_guard import KeyRing
from kairo_guard.cli.main import main
from kairo_guard.config.settings import STATE_ID_FILE, read_state_pin, state_directory_id
from kairo_guard.core.exceptions import AuditIntegrityError, ConfigError, IndexLagging
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


def test_a_state_directory_keeps_its_name_when_its_host_is_renamed(
    tmp_path: Path, ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a container re-created around the same volume gets a new host name: the state
    # directory is still the same replica (its own coverage row, its own audit anchor),
    # not a second one whose stale row blocks every check
    home = tmp_path / "state"
    monkeypatch.setattr(socket, "gethostname", lambda: "pod-7f9c")
    with make_guard(home, ring=ring, pii_gate=False) as g:
        first = g.settings.audit_log_id
        g.store.publish_coverage(first, None)
        g.audit.append({"event": "before"})
    assert (home / STATE_ID_FILE).read_text().split()[0] == first
    assert (home / STATE_ID_FILE).stat().st_mode & 0o077 == 0

    monkeypatch.setattr(socket, "gethostname", lambda: "pod-a41e")
    with make_guard(home, ring=ring, pii_gate=False) as g:
        assert g.settings.audit_log_id == first
        assert [r.replica_id for r in g.store.replicas()] == [first]
        wait_replicas(g.store, g.settings.audit_log_id, 0.05)  # nobody else to wait for
        g.audit.append({"event": "after"})  # the anchor is this directory's own


def test_an_unpinned_directory_is_named_after_its_host_and_path_and_a_bad_pin_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "state"
    home.mkdir()
    monkeypatch.setattr(socket, "gethostname", lambda: "host-a")
    named_a = state_directory_id(home)
    monkeypatch.setattr(socket, "gethostname", lambda: "host-b")
    assert state_directory_id(home) != named_a
    (home / STATE_ID_FILE).write_text("../../etc/passwd\n")
    with pytest.raises(ConfigError, match="does not hold a state directory name"):
        state_directory_id(home)


def test_a_pinned_name_not_signed_by_the_deployment_refuses_to_open(
    tmp_path: Path, ring: KeyRing
) -> None:
    # whoever can write the directory must not rename it: a rolled-back log would then
    # open under a name the store holds no anchor for
    home = tmp_path / "state"
    with make_guard(home, ring=ring, pii_gate=False) as g:
        g.audit.append({"event": "first"})
    pin = home / STATE_ID_FILE
    name, signature = pin.read_text().split()
    pin.write_text(f"sd-0000000000000000 {signature}\n")
    with pytest.raises(AuditIntegrityError, match="not signed by this deployment"):
        make_guard(home, ring=ring, pii_gate=False)
    other = KeyRing.generate()  # the right name, signed with another deployment's keys
    with make_guard(tmp_path / "elsewhere", ring=other, pii_gate=False):
        pass
    forged = (tmp_path / "elsewhere" / STATE_ID_FILE).read_text().split()[1]
    pin.write_text(f"{name} {forged}\n")
    with pytest.raises(AuditIntegrityError, match="not signed by this deployment"):
        make_guard(home, ring=ring, pii_gate=False)
    pin.write_text(f"{name} {signature}\n")  # as it was: it opens again
    with make_guard(home, ring=ring, pii_gate=False) as g:
        assert g.settings.audit_log_id == name == read_state_pin(home)[0]  # type: ignore[index]


def test_a_name_given_in_the_environment_is_not_pinned(tmp_path: Path, ring: KeyRing) -> None:
    home = tmp_path / "state"
    env = {"KAIRO_GUARD_AUDIT_LOG_ID": "replica-west-1"}
    with make_guard(home, ring=ring, pii_gate=False, env=env) as g:
        assert g.settings.audit_log_id == "replica-west-1"
    assert not (home / STATE_ID_FILE).exists()


def test_a_pin_signed_before_a_key_rotation_is_signed_again_and_the_old_key_can_go(
    tmp_path: Path, ring: KeyRing
) -> None:
    home = tmp_path / "state"
    with make_guard(home, ring=ring, pii_gate=False) as g:
        name = g.settings.audit_log_id
    new = KeyRing.generate("k2")
    rotated = KeyRing(keys={**ring.keys, **new.keys}, signing_key_id="k2", pseudonym_key_id="k1")
    with make_guard(home, ring=rotated, pii_gate=False):
        pass
    assert (home / STATE_ID_FILE).read_text().split()[1].startswith("k2:")
    retired = KeyRing(keys=new.keys, signing_key_id="k2")  # k1 has left the ring
    with make_guard(home, ring=retired, pii_gate=False) as g:  # the pin verifies
        assert g.settings.audit_log_id == name
