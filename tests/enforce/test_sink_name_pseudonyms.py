"""A sink's name can hold its tenant's id, however it embeds it; the audit log of a check
holds only the pseudonym."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from kg_testing import make_guard

from kairo_guard import make_sink
from kairo_guard.cli.main import main
from kairo_guard.enforce.ledger import audit_sink_name


def _pseudonym(tenant: str) -> str:
    return f"tp_{len(tenant)}"


def test_when_a_sink_name_holds_a_tenant_id_then_the_audit_log_holds_only_its_pseudonym(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n')
    assert main(["scan", "in.jsonl", "--sink", "tenant-fine-tune:acme-corp"]) == 1
    audit = (Path(cli_env["KAIRO_GUARD_HOME"]) / "audit" / "audit.jsonl").read_bytes()
    assert b"acme-corp" not in audit


@pytest.mark.parametrize("name", ["acmeft", "ft_acme2", "acme-ft", "FTacme", "acmeacme"])
def test_when_a_sink_name_embeds_its_tenant_id_then_the_audit_name_holds_only_the_pseudonym(
    name: str,
) -> None:
    sink = make_sink(name, "tenant-fine-tune:acme")
    audited = audit_sink_name(sink, _pseudonym)
    assert "acme" not in audited
    assert "tp_4" in audited


def test_when_a_check_runs_on_a_sink_named_after_its_tenant_then_no_entry_holds_the_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries: list[Mapping[str, Any]] = []
    with make_guard(tmp_path) as guard:
        monkeypatch.setattr(guard.audit, "append", entries.append)
        sink = make_sink("acmeft", "tenant-fine-tune:acme")
        guard.check([{"a": 1}], sink=sink)
    assert entries
    assert not any("acme" in repr(entry) for entry in entries)
