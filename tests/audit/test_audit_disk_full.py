"""The audit log's disk fills up (a real one: a small tmpfs mounted over the audit
directory): decisions fail closed and no entry is lost; once there is room again the
kept entries are written and the log verifies."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kg_testing import make_guard, sealed_record

from kairo_guard import AuditError, KeyRing
from kairo_guard.audit.log import verify_audit
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 1 MiB tmpfs (this machine's tests run as root, as CI does)."""
    where = Path(tempfile.mkdtemp(prefix="kg-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
    assert shutil.disk_usage(directory).free < 4096  # full
    return filler


def test_when_the_audit_disk_is_full_then_decisions_fail_closed_and_nothing_is_lost(
    tmp_path: Path, small_disk: Path
) -> None:
    home, ring = tmp_path / "state", KeyRing.generate()
    home.mkdir()
    os.symlink(small_disk, home / "audit")  # the audit directory is on the small disk
    guard = make_guard(home, ring=ring, pii_gate=False)
    sink = guard.resolve_sink("corpus", kind="shared-training")
    record = sealed_record(guard, {"text": "a public note"}, data_class="operator_public")
    assert guard.check([record], sink=sink).allowed == 1
    guard.audit.flush()
    filler = _fill(small_disk)

    during = guard.check([record], sink=sink)  # decided; its entry waits in memory
    with pytest.raises(AuditError, match="No space left"):
        guard.audit.flush()

    def decide() -> None:
        guard.check([record], sink=sink)
        guard.audit.flush()

    with pytest.raises(AuditError):  # a decision that cannot be recorded fails closed
        decide()

    filler.unlink()  # room again
    guard.audit.flush()
    guard.close()
    result = verify_audit(home / "audit", ring.subkeys(PURPOSE_AUDIT_HEAD))
    assert result.ok, result.problem
    assert result.entries == result.signed_entries
    assert during.check_id.encode() in (home / "audit" / "audit.jsonl").read_bytes()
