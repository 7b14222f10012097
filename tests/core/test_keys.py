"""The key ring: sources, key files, derived subkeys, pseudonyms."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kairo_guard import Guard, KeyRing, KeyringError
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD, PURPOSE_SEAL


def test_when_no_key_anywhere_then_guard_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="keys init"):
        Guard(home=tmp_path, env={})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nokeyid", "must look like"),
        ("k1:c2hvcnQ", "shorter than 32"),
        ("k.1:" + "A" * 43, "invalid key id"),
        ("k1:" + "A" * 43 + ",k1:" + "B" * 43, "twice"),
        ("k1:***", "base64url"),
    ],
)
def test_when_env_key_malformed_then_clear_error(value: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message):
        KeyRing.from_env_value(value)


def test_subkeys_differ_by_purpose_and_key() -> None:
    ring = KeyRing(keys={"a": b"x" * 32, "b": b"y" * 32}, signing_key_id="a")
    assert ring.subkey(PURPOSE_SEAL) != ring.subkey(PURPOSE_AUDIT_HEAD)
    assert ring.subkey(PURPOSE_SEAL, "a") != ring.subkey(PURPOSE_SEAL, "b")
    with pytest.raises(KeyringError, match="unknown key id"):
        ring.subkey(PURPOSE_SEAL, "c")


def test_pseudonyms_are_stable_keyed_and_stay_across_rotation() -> None:
    ring = KeyRing.generate("k1")
    other = KeyRing.generate("k1")
    assert ring.pseudonym("acme") == ring.pseudonym("acme")
    assert ring.pseudonym("acme") != ring.pseudonym("globex")
    assert ring.pseudonym("acme") != other.pseudonym("acme")
    assert "acme" not in ring.pseudonym("acme")
    rotated = KeyRing(
        keys={**ring.keys, "k2": b"z" * 32}, signing_key_id="k2", pseudonym_key_id="k1"
    )
    assert rotated.pseudonym("acme") == ring.pseudonym("acme")
    assert KeyRing.from_json(rotated.to_json()).pseudonym("acme") == ring.pseudonym("acme")


def test_state_files_are_private(tmp_path: Path) -> None:
    from kg_testing import make_guard

    with make_guard(tmp_path / "state") as guard:
        guard.grant_agreement("acme")
    db = tmp_path / "state" / "state.sqlite3"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state" / "audit").stat().st_mode) == 0o700
