"""The public API is exactly what ``kairo_guard.__all__`` lists, kept sorted."""

from __future__ import annotations

import kairo_guard


def test_all_is_sorted_and_complete() -> None:
    exported = kairo_guard.__all__
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    public = {
        name
        for name, value in vars(kairo_guard).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "kairo_guard").startswith("kairo_guard")
        and not isinstance(value, type(kairo_guard))
    }
    assert public - {"annotations"} == set(exported)


def test_every_exported_name_resolves() -> None:
    for name in kairo_guard.__all__:
        assert getattr(kairo_guard, name) is not None


def test_when_the_package_is_searched_then_no_seal_forging_helper_ships() -> None:
    # Test helpers that mint permitting seals without vetting live in tests/support,
    # outside the wheel; the package itself has no module or function for it.
    import ast
    from pathlib import Path

    root = Path(kairo_guard.__file__).parent
    assert not (root / "testing.py").exists()
    names = {
        node.name
        for path in root.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert not {n for n in names if "unchecked" in n or n.startswith(("forge_", "mint_fake"))}
