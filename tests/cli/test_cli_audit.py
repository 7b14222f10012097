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
