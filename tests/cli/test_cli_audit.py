"""``kairo-guard audit verify``: the log of what the commands did, and its tampering."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_when_commands_have_run_then_audit_verify_passes(kg: Any, acme_sealed: Path) -> None:
    assert kg("agreements", "grant", "acme").code == 0
    assert kg("scan", acme_sealed, "--sink", "shared-training").code == 1

    result = kg("audit", "verify")

    assert result.code == 0
    assert "audit log ok" in result.out


def test_when_one_byte_of_an_audit_entry_is_edited_then_audit_verify_names_the_line(
    kg: Any, acme_sealed: Path, home: Path
) -> None:
    assert kg("agreements", "grant", "acme").code == 0
    assert kg("scan", acme_sealed, "--sink", "tenant-fine-tune:acme").code == 0
    log = home / "audit" / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 3
    at = lines[1].index(b'"event":"') + len(b'"event":"')
    lines[1] = lines[1][:at] + b"X" + lines[1][at + 1 :]
    log.write_bytes(b"".join(lines))

    result = kg("audit", "verify")

    assert result.code == 1
    assert "FAILED" in result.err
    assert "line 2" in result.err


def _copy_log(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (home / "audit").iterdir() if p.is_file()}


def test_when_an_older_copy_of_log_and_head_is_restored_then_verify_fails_and_no_writer_opens(
    kg: Any, acme_sealed: Path, home: Path
) -> None:
    # the reproduction: a consistent older pair (log and its own signed head) verified
    assert kg("agreements", "grant", "acme").code == 0
    older = _copy_log(home)
    assert kg("scan", acme_sealed, "--sink", "shared-training").code == 1  # more entries
    assert kg("audit", "verify").code == 0
    for name, data in older.items():
        (home / "audit" / name).write_bytes(data)

    result = kg("audit", "verify")

    assert result.code == 1
    assert "rolled back or deleted" in result.err
    # and no command appends to it (which would move the anchor past the evidence)
    refused = kg("scan", acme_sealed, "--sink", "shared-training")
    assert refused.code not in (0, 1)
    assert "rolled back or deleted" in refused.err
    assert _copy_log(home) == older


def test_when_log_and_head_are_deleted_then_verify_fails(
    kg: Any, acme_sealed: Path, home: Path
) -> None:
    assert kg("scan", acme_sealed, "--sink", "shared-training").code == 1
    for path in (home / "audit").iterdir():
        path.unlink()

    result = kg("audit", "verify")

    assert result.code == 1
    assert "rolled back or deleted" in result.err


def test_when_the_log_is_replaced_by_another_of_the_same_length_then_verify_fails(
    kg: Any, acme_sealed: Path, home: Path, tmp_path: Path
) -> None:
    # someone holding the key re-signs a different history: every line and the head are
    # genuine, only the anchor outside the directory knows it is not the log written
    from kairo_guard.audit.log import AuditLog
    from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD
    from kairo_guard.store.keyfile import load_key_ring

    assert kg("scan", acme_sealed, "--sink", "shared-training").code == 1
    entries = len((home / "audit" / "audit.jsonl").read_bytes().splitlines())
    ring = load_key_ring(home)
    forged = tmp_path / "forged"
    with AuditLog(forged, ring.subkey(PURPOSE_AUDIT_HEAD), ring.signing_key_id) as log:
        for i in range(entries):
            log.append({"event": "nothing-happened", "n": i})
    for path in forged.iterdir():
        (home / "audit" / path.name).write_bytes(path.read_bytes())

    result = kg("audit", "verify")

    assert result.code == 1
    assert "replaced or rewritten" in result.err
