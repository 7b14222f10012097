"""The key file: mode 0600, never overwritten, refused when others can read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kairo_guard import KeyRing, KeyringError
from kairo_guard.store.keyfile import load_key_ring, read_key_file, write_key_file


def test_key_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring = KeyRing.generate()
    write_key_file(path, ring)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    with pytest.raises(KeyringError, match="refusing to overwrite"):
        write_key_file(path, KeyRing.generate())
    assert path.read_bytes() == before
    assert read_key_file(path) == ring


def test_when_key_file_readable_by_others_then_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_key_file(path, KeyRing.generate())
    os.chmod(path, 0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        read_key_file(path)


def test_env_key_wins_over_key_file(tmp_path: Path) -> None:
    write_key_file(tmp_path / "keys.json", KeyRing.generate("file"))
    env_ring = KeyRing.generate("env")
    loaded = load_key_ring(tmp_path, env={"KAIRO_GUARD_KEY": env_ring.to_env_value()})
    assert loaded.signing_key_id == "env"
    assert loaded.keys == env_ring.keys
