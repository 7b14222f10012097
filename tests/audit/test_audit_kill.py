"""A writer killed (SIGKILL) in the middle of appending: the log verifies or reports
exactly its torn tail, and repair restores a verifiable chain without losing an entry
the writer had committed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from kairo_guard.audit.log import AuditLog, verify_audit

KEY, KEY_ID = b"k" * 32, "audit-1"
_WRITER = """
import sys
from pathlib import Path
from typing import Any
from kairo_guard.audit.log import AuditLog
log = AuditLog(Path(sys.argv[1]), b"k" * 32, "audit-1", flush_interval=60)
start, pad = int(sys.argv[2]), "x" * 2_000_000
n = start
while True:  # a batch of 8 large lines is one long write(): a kill lands inside it
    for _ in range(8):
        log.append({"n": n, "pad": pad})
        n += 1
    log.flush()  # written, fsynced, under a signed head: committed
    print(n - 1, flush=True)
"""


def _kill_mid_append(
    directory: Path, start: int, rng: random.Random, *, in_write: bool = False
) -> int:
    """Run a writer from entry ``start``, SIGKILL it mid-append; return how many entries
    it had committed in all. ``in_write``: kill once the log file has begun to grow past
    the committed batch (inside the batch's write, so the kill most likely tears it),
    else after a random pause (anywhere: serialising, writing or syncing)."""
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory), str(start)],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        committed = int(proc.stdout.readline()) + 1
        if in_write:
            path, deadline = directory / "audit.jsonl", time.monotonic() + 30
            size = path.stat().st_size
            while path.stat().st_size == size and time.monotonic() < deadline:
                pass  # the next batch's write has not begun
        else:
            time.sleep(rng.random() * 0.06)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for line in proc.stdout:  # printed before the kill: committed too
            committed = int(line) + 1
    return committed


def _numbers(directory: Path) -> list[int]:
    lines = (directory / "audit.jsonl").read_bytes().splitlines()
    return [orjson.loads(line)["n"] for line in lines if b'"n":' in line]


def test_a_writer_killed_mid_append_loses_no_committed_entry_and_repairs(tmp_path: Path) -> None:
    rng, keys, committed, torn_seen = random.Random(16), {KEY_ID: KEY}, 0, 0
    for attempt in range(8):
        committed = _kill_mid_append(tmp_path, committed, rng, in_write=attempt % 2 == 1)
        found = verify_audit(tmp_path, keys)
        assert found.entries >= committed  # nothing committed was lost
        if not found.ok:  # only a torn last line, right after the intact entries
            assert found.problem is not None
            assert "torn last line" in found.problem
            assert found.first_bad_line == found.entries + 1
            torn_seen += 1
        with AuditLog(tmp_path, KEY, KEY_ID) as log:
            moved = log.repair()
        assert (moved > 0) == (not found.ok)
        repaired = verify_audit(tmp_path, keys)
        assert repaired.ok, repaired.problem
        assert repaired.entries == found.entries + (moved > 0)  # + the torn-tail entry
        numbers = _numbers(tmp_path)
        assert numbers[:committed] == list(range(committed))  # in order, none missing
        committed = max(committed, numbers[-1] + 1)
    assert len(list(tmp_path.glob("audit.torn.*"))) == torn_seen  # each tear moved aside
    assert torn_seen >= 1  # the torn path was taken, not only clean kills


def test_audit_repair_command_repairs_a_torn_tail(kg: Any, home: Path) -> None:
    assert kg("tenants", "add", "acme").code == 0  # the CLI's state has a key and a log
    with (home / "audit" / "audit.jsonl").open("ab") as log:
        log.write(b'{"seq":99,"ts":1.0,"prev":"ab')  # a writer killed mid-line
    assert kg("audit", "verify").code == 1

    result = kg("audit", "repair")

    assert result.code == 0, result.err
    assert "torn tail of 29 bytes" in result.out
    assert kg("audit", "verify").code == 0
    assert "nothing to repair" in kg("audit", "repair").out
