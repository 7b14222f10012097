"""The store contract stands alone: a backend other than SQLite imports it and nothing else;
every backend implements all of it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kairo_guard.core.anchor import AnchorStore
from kairo_guard.store import base
from kairo_guard.store.coverage import CoverageStore
from kairo_guard.store.sql_store import SQLStore

_BASE = Path(base.__file__)


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_when_the_contract_is_read_then_it_imports_no_backend_and_no_implementation() -> None:
    imported = _imported(_BASE)
    assert not {m for m in imported if "sqlite" in m or "psycopg" in m or "postgres" in m}
    ours = {m for m in imported if m.startswith("kairo_guard.")}
    assert "kairo_guard.core.types" in ours
    # the core's types, and the protocols beside it (kairo_guard.store.coverage)
    assert {m for m in ours if not m.startswith("kairo_guard.core.")} <= {
        "kairo_guard.store.coverage"
    }


@pytest.mark.parametrize(
    "protocol",
    [
        base.Store,
        base.DatasetStore,
        base.TenantDataStore,
        base.ShardStore,
        AnchorStore,
        CoverageStore,
    ],
)
def test_when_a_contract_method_is_listed_then_the_backend_implements_it(
    protocol: type, store: SQLStore
) -> None:
    methods = {
        name
        for name, value in vars(protocol).items()
        if callable(value) and not name.startswith("_")
    }
    assert methods
    assert sorted(m for m in methods if not callable(getattr(store, m, None))) == []
