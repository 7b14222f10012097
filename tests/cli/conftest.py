"""Fixtures of the CLI tests: acme's documents labelled by the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import ACME, DOCS, write_jsonl


@pytest.fixture
def acme_sealed(kg: Any, tmp_path: Path) -> Path:
    """acme's documents, labelled as acme's customer content by ``kairo-guard label``."""
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    assert kg("label", "docs.jsonl", *ACME, "--out", "acme.jsonl").code == 0
    return tmp_path / "acme.jsonl"
