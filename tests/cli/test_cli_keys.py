"""``kairo-guard keys init|rotate``: a private key file the guard then uses."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from cli_support import ACME, DOCS, load, read_jsonl, write_jsonl

from kairo_guard import KeyRing, SealCodec, SealError
from kairo_guard.store.keyfile import read_key_file


def test_when_keys_init_then_key_file_is_private_and_the_guard_uses_it(
    kg: Any, home: Path, ring: KeyRing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAIRO_GUARD_KEY")

    result = kg("keys", "init")

    assert result.code == 0
    key_file = home / "keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert str(key_file) in result.out
    write_jsonl(tmp_path / "docs.jsonl", DOCS[:1])
    assert kg("label", "docs.jsonl", *ACME, "--out", "acme.jsonl").code == 0
    (record,) = read_jsonl(tmp_path / "acme.jsonl")
    assert SealCodec(read_key_file(key_file)).open(record["_kairo"]).tenant == "acme"
    assert kg("agreements", "grant", "acme").code == 0
    assert kg("scan", "acme.jsonl", "--sink", "tenant-fine-tune:acme").code == 0
    # The seal is the key file's: the fixture's ring (same key id) cannot open it.
    with pytest.raises(SealError):
        SealCodec(ring).open(record["_kairo"])


def test_when_keys_init_runs_again_then_it_refuses_and_keeps_the_file(
    kg: Any, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAIRO_GUARD_KEY")
    assert kg("keys", "init").code == 0
    before = (home / "keys.json").read_bytes()

    result = kg("keys", "init", "--key-id", "k2")

    assert result.code == 2
    assert "refusing to overwrite" in result.err
    assert (home / "keys.json").read_bytes() == before


def test_when_keys_rotate_then_a_new_key_signs_and_old_seals_still_verify(
    kg: Any, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAIRO_GUARD_KEY")
    assert kg("keys", "init").code == 0
    old_ring = read_key_file(home / "keys.json")
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    label = ("label", "docs.jsonl", "--tenant", "acme", "--class", "customer_content", "--out")
    assert kg(*label, "old.jsonl").code == 0

    assert kg("keys", "rotate", "--key-id", "k2").code == 0

    new_ring = read_key_file(home / "keys.json")
    assert stat.S_IMODE((home / "keys.json").stat().st_mode) == 0o600
    assert new_ring.signing_key_id == "k2"
    assert new_ring.keys["k1"] == old_ring.keys["k1"]
    assert kg(*label, "new.jsonl").code == 0
    assert {r["_kairo"].split(".")[1] for r in read_jsonl(tmp_path / "old.jsonl")} == {"k1"}
    assert {r["_kairo"].split(".")[1] for r in read_jsonl(tmp_path / "new.jsonl")} == {"k2"}
    both = tmp_path / "both.jsonl"
    both.write_bytes((tmp_path / "old.jsonl").read_bytes() + (tmp_path / "new.jsonl").read_bytes())
    assert kg("agreements", "grant", "acme").code == 0
    scan = kg("scan", both, "--sink", "tenant-fine-tune:acme", "--report", "r.json")
    assert scan.code == 0
    assert load(tmp_path / "r.json")["allowed"] == 2 * len(DOCS)
    assert kg("keys", "rotate", "--key-id", "k2").code == 2
