"""The vetting role's Ed25519 key through the CLI: made by ``keys init``, rotated,
published; a state directory without it verifies vetted shards and vouches for none."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from cli_support import read_jsonl, write_jsonl

from kairo_guard import VerifyKeys
from kairo_guard.store.keyfile import load_signer

PUBLIC = [
    {"text": "The scheduler retries a failed task three times with exponential backoff."},
    {"text": "Set the log level with the LOG_LEVEL variable; the default is info."},
]


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory with nothing in it yet (no key, no signer)."""
    home = tmp_path / "fresh-state"
    monkeypatch.setenv("KAIRO_GUARD_HOME", str(home))
    monkeypatch.delenv("KAIRO_GUARD_KEY")
    return home


def test_keys_init_makes_a_private_signer_and_a_public_verification_file(
    kg: Any, fresh: Path
) -> None:
    result = kg("keys", "init")
    assert result.code == 0, result.err
    signer_file, verify_file = fresh / "signer.json", fresh / "verify-keys.json"
    assert stat.S_IMODE(signer_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(verify_file.stat().st_mode) == 0o644
    signer = load_signer(fresh, env={})
    assert signer is not None
    assert signer.signing_key_id == "s1"
    public = VerifyKeys.from_json(verify_file.read_bytes())
    kid, signature = signer.sign(b"manifest")
    assert public.verify(kid, signature, b"manifest")
    assert b"PRIVATE" not in verify_file.read_bytes().upper()
    assert signer.to_value().split(":")[1] not in verify_file.read_text()
    printed = kg("keys", "public")
    assert printed.code == 0
    assert printed.out.strip() == public.to_value()


@pytest.mark.sqlite_only
def test_a_state_directory_with_only_public_keys_scans_shards_and_vets_nothing(
    kg: Any, fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert kg("keys", "init").code == 0
    write_jsonl(tmp_path / "ops.jsonl", PUBLIC)
    assert kg("label", "ops.jsonl", "--class", "operator_public", "--out", "ops.kp.jsonl").code == 0
    records = read_jsonl(tmp_path / "ops.kp.jsonl")
    assert all(r["_kairo"].startswith("kp1.") for r in records)

    # the training side: same database and HMAC key file, the public keys only
    training = tmp_path / "training-state"
    training.mkdir()
    for name in ("keys.json", "verify-keys.json"):
        shutil.copy2(fresh / name, training / name)
    monkeypatch.setenv("KAIRO_GUARD_HOME", str(training))
    monkeypatch.setenv("KAIRO_GUARD_DB_URL", f"sqlite:///{fresh / 'state.sqlite3'}")
    scanned = kg("scan", "ops.kp.jsonl", "--sink", "shared-training")
    assert scanned.code == 0, scanned.out + scanned.err
    refused = kg("label", "ops.jsonl", "--class", "operator_public", "--out", "again.jsonl")
    assert refused.code == 2
    assert "no signing key" in refused.err


def test_after_rotate_signer_old_shards_still_pass_and_new_ones_use_the_new_key(
    kg: Any, fresh: Path, tmp_path: Path
) -> None:
    assert kg("keys", "init").code == 0
    write_jsonl(tmp_path / "old.jsonl", PUBLIC[:1])
    write_jsonl(tmp_path / "new.jsonl", PUBLIC[1:])
    assert kg("label", "old.jsonl", "--class", "operator_public", "--out", "old.kp.jsonl").code == 0

    rotated = kg("keys", "rotate-signer", "--key-id", "s2")
    assert rotated.code == 0, rotated.err
    assert set(VerifyKeys.from_json((fresh / "verify-keys.json").read_bytes()).keys) == {
        "s1",
        "s2",
    }
    assert kg("label", "new.jsonl", "--class", "operator_public", "--out", "new.kp.jsonl").code == 0
    assert kg("scan", "old.kp.jsonl", "--sink", "shared-training").code == 0
    assert kg("scan", "new.kp.jsonl", "--sink", "shared-training").code == 0
    assert kg("keys", "rotate-signer", "--key-id", "s2").code == 2  # the id is taken
