"""A sink's name can hold a tenant id; the audit log of a check holds only its pseudonym."""

from __future__ import annotations

from pathlib import Path

from kairo_guard.cli.main import main


def test_when_a_sink_name_holds_a_tenant_id_then_the_audit_log_holds_only_its_pseudonym(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n')
    assert main(["scan", "in.jsonl", "--sink", "tenant-fine-tune:acme-corp"]) == 1
    audit = (Path(cli_env["KAIRO_GUARD_HOME"]) / "audit" / "audit.jsonl").read_bytes()
    assert b"acme-corp" not in audit
