"""What every benchmark reports about where it ran and what it measured."""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python and platform."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def library_state() -> tuple[str, float]:
    """Hash (16 hex) of the kairo_guard sources measured, and their newest mtime."""
    import kairo_guard

    h = hashlib.sha256()
    newest = 0.0
    root = Path(kairo_guard.__file__).parent
    for f in sorted(root.rglob("*")):  # every source of every subpackage, the C core too
        if f.suffix not in (".py", ".c", ".tsv") or "__pycache__" in f.parts:
            continue
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
        newest = max(newest, f.stat().st_mtime)
    return h.hexdigest()[:16], newest
