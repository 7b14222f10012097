"""Child processes of a test, found through /proc (no psutil)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def child_pids(parent: int, *argv_parts: bytes) -> list[int]:
    """Pids of ``parent``'s children whose command line holds every one of
    ``argv_parts`` as an argument (all children when none are given)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
                continue
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if all(part in argv for part in argv_parts):
                found.append(int(entry))
    return found
