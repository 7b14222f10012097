"""Fixtures of the CLI tests (a pytest plugin, loaded by ``tests/conftest.py``).

A plugin rather than ``tests/cli/conftest.py``: mypy checks ``tests/`` as flat modules,
and two modules named ``conftest`` would collide.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bad_lines import Minter
from cli_support import ACME, DOCS, write_jsonl
from kg_testing import make_guard

from kairo_guard import KeyRing


@pytest.fixture
def acme_sealed(kg: Any, tmp_path: Path) -> Path:
    """acme's documents, labelled as acme's customer content by ``kairo-guard label``."""
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    assert kg("label", "docs.jsonl", *ACME, "--out", "acme.jsonl").code == 0
    return tmp_path / "acme.jsonl"


@pytest.fixture
def minter(cli_env: dict[str, str], ring: KeyRing) -> Iterator[Minter]:
    """Seals lines with the key ring and state directory of ``cli_env``."""
    with make_guard(Path(cli_env["KAIRO_GUARD_HOME"]), ring=ring) as guard:
        yield Minter(guard)
