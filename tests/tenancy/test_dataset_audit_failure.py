"""A dataset build whose audit entry cannot be written leaves no dataset row
pointing at files that were removed (the retention sweep opens every recorded dataset)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kairo_guard import Guard
from kairo_guard.core.exceptions import AuditError


def test_when_the_build_cannot_be_audited_then_every_recorded_dataset_still_opens(
    guard: Guard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard.grant_agreement("acme")
    records = [guard.label_record({"text": f"acme doc {i}"}, tenant="acme") for i in range(3)]
    real = guard.audit.append

    def append(entry: Any) -> None:
        if entry.get("event") == "dataset.build":
            raise AuditError("the background audit flush failed: disk full")
        real(entry)

    monkeypatch.setattr(guard.audit, "append", append)
    builder = guard.tenant_dataset("acme")
    builder.add_all(records)
    with pytest.raises(AuditError):
        builder.write(tmp_path / "ds")
    monkeypatch.undo()
    for info in guard.datasets():
        guard.open_dataset(info.path)  # no row without its files
    guard.sweep_retention()
