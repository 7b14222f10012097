"""The architecture, checked from the source: no import circles, each package imports
only the packages below it, no private name crosses a module boundary, no module is
too long to read.

Every module of ``kairo_guard/`` is parsed with :mod:`ast` (nothing is imported), and
every import counts: at top level, inside functions, under ``if TYPE_CHECKING:``, and
``importlib.import_module("kairo_guard....")``-style imports by name. Each check lists
every violation in its failure message. The checker itself is tested on small planted
packages, so a check that stopped finding anything would fail too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "kairo_guard"
# Found beside the tests, not imported: the architecture is read from the source.
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE

#: The package layer order: a package may import only packages of a lower rank (and
#: its own modules). store and audit share a rank, so neither imports the other. The
#: top-level ``kairo_guard/__init__.py`` is the public facade: it may import anything,
#: and nothing in the package may import it.
LAYERS: dict[str, int] = {
    "core": 1,
    "store": 2,
    "audit": 2,
    "detect": 3,
    "otel": 4,
    "enforce": 5,
    "tenancy": 6,
    "anonymize": 7,
    "config": 8,
    "guard": 9,
    "ingest": 10,
    "cli": 11,
    "integrations": 12,
}
#: Top-level modules that belong to another module's layer: the Guard's wiring is part
#: of the facade.
PART_OF = {"assembly": "guard", "workers": "guard", "audit_opening": "guard"}
MAX_LINES = 400
#: Private-looking names that are public API of ``collections.namedtuple``.
NAMEDTUPLE_API = frozenset({"_asdict", "_field_defaults", "_fields", "_make", "_replace"})
_OWN = frozenset({"self", "cls"})


@dataclass(frozen=True)
class Module:
    """One parsed module of the package."""

    name: str
    path: Path
    tree: ast.Module
    lines: int

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


@dataclass(frozen=True)
class Import:
    """One import of a package module by another: where it is and what it names."""

    source: str
    target: str
    path: Path
    line: int
    names: tuple[str, ...]

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root.parent)}:{self.line}"


def load_modules(root: Path = PACKAGE_DIR) -> dict[str, Module]:
    """Every module under ``root`` (a package directory), parsed, by dotted name."""
    modules: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        text = path.read_text(encoding="utf-8")
        modules[".".join(parts)] = Module(
            ".".join(parts), path, ast.parse(text, str(path)), len(text.splitlines())
        )
    return modules


def _resolve(name: str, modules: dict[str, Module]) -> str | None:
    """The package module ``name`` denotes: itself, else its longest known prefix."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _base_of_relative(module: Module, level: int) -> str:
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return package


def _is_import_call(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return "import" in name


def imports_of(module: Module, modules: dict[str, Module]) -> Iterator[Import]:
    """Every import of a package module in ``module``, wherever it stands."""
    root = next(iter(modules)).split(".")[0]
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Import | ast.ImportFrom | ast.Call):
            continue
        found: list[tuple[str, tuple[str, ...]]] = []
        if isinstance(node, ast.Import):
            found = [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = _base_of_relative(module, node.level)
                base = f"{prefix}.{base}" if base else prefix
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub, ()) if sub in modules else (base, (alias.name,)))
        elif isinstance(node, ast.Call) and _is_import_call(node):
            found = [
                (arg.value, ())
                for arg in node.args
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
        for name, names in found:
            if name != root and not name.startswith(root + "."):
                continue
            target = _resolve(name, modules)
            if target is not None and target != module.name:
                yield Import(module.name, target, module.path, node.lineno, names)


def import_graph(modules: dict[str, Module]) -> dict[str, list[Import]]:
    """Each module's imports of other package modules."""
    return {name: list(imports_of(module, modules)) for name, module in modules.items()}


def find_cycles(modules: dict[str, Module]) -> list[list[str]]:
    """One cycle (as a closed path of module names) per strongly connected group of
    modules that import each other, directly or not (Tarjan's algorithm)."""
    graph = {n: sorted({i.target for i in imps}) for n, imps in import_graph(modules).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: list[str], graph: dict[str, list[str]]) -> list[str]:
    """A closed path through the group's first module (breadth first, so the shortest)."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in graph[node]:
            if nxt == start:
                return [*paths[node], start]
            if nxt in members and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return group  # unreachable for a strongly connected group


def layer_of(module: str) -> str | None:
    """The package (layer) a module belongs to; None for the top-level facade."""
    parts = module.split(".")
    return PART_OF.get(parts[1], parts[1]) if len(parts) > 1 else None


def layer_violations(modules: dict[str, Module], root: Path = PACKAGE_DIR) -> list[str]:
    """Each import of a package at or above the importer's own layer."""
    out = []
    for imports in import_graph(modules).values():
        for imp in imports:
            source, target = layer_of(imp.source), layer_of(imp.target)
            if source is None or source == target:
                continue  # the facade imports anything; a package its own modules
            if source not in LAYERS or (target is not None and target not in LAYERS):
                out.append(f"{imp.where(root)}: package without a layer in {imp.target}")
                continue
            if target is None or LAYERS[target] >= LAYERS[source]:
                out.append(
                    f"{imp.where(root)}: {source} imports {target or 'the facade'} ({imp.target})"
                )
    return list(dict.fromkeys(out))  # one line per import statement, not per name


def _defined_privates(module: Module) -> set[str]:
    """Private names ``module`` defines: functions, classes, methods, module and class
    variables, and attributes it sets on ``self``/``cls``."""
    names: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in _OWN
        ):
            names.add(node.attr)
    return {n for n in names if _is_private(n)}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_own(value: ast.expr) -> bool:
    if isinstance(value, ast.Name):
        return value.id in _OWN
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "super"
    )


def private_uses(
    modules: dict[str, Module], root: Path = PACKAGE_DIR
) -> tuple[list[str], list[str]]:
    """Uses of private names across modules, and uses of third-party private names.

    Returns:
        ``(violations, third_party)``: a violation imports a private name from another
        package module, or reads ``x._name`` where ``x`` is not ``self``/``cls``/
        ``super()`` and ``_name`` is defined in another package module but not in
        this one; ``third_party`` lists ``x._name`` defined in no package module.
    """
    defined = {name: _defined_privates(m) for name, m in modules.items()}
    violations: list[str] = []
    third_party: list[str] = []
    for imports in import_graph(modules).values():
        for imp in imports:
            for name in imp.names:
                if _is_private(name):
                    violations.append(f"{imp.where(root)}: imports {name} from {imp.target}")
    for name, module in modules.items():
        where = module.path.relative_to(root.parent)
        elsewhere = set().union(*(d for n, d in defined.items() if n != name))
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
                continue
            if _is_own(node.value) or node.attr in NAMEDTUPLE_API:
                continue
            use = f"{where}:{node.lineno}: {ast.unparse(node)}"
            if node.attr in elsewhere and node.attr not in defined[name]:
                violations.append(use)
            elif node.attr not in elsewhere and node.attr not in defined[name]:
                third_party.append(use)
    return violations, third_party


def oversized(modules: dict[str, Module], root: Path = PACKAGE_DIR) -> list[str]:
    """Each module longer than :data:`MAX_LINES`."""
    return [
        f"{m.path.relative_to(root.parent)}: {m.lines} lines"
        for m in modules.values()
        if m.lines > MAX_LINES
    ]


def _listing(title: str, items: list[str]) -> str:
    return f"{len(items)} {title}:\n  " + "\n  ".join(items)


# -- the package ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return load_modules()


def test_the_package_has_the_layers_it_is_checked_against(modules: dict[str, Module]) -> None:
    packages = {layer_of(name) for name in modules} - {None}
    assert packages == set(LAYERS), "LAYERS and the package's subpackages differ"


def test_no_import_cycle_between_modules(modules: dict[str, Module]) -> None:
    cycles = [" -> ".join(c) for c in find_cycles(modules)]
    assert not cycles, _listing("import cycles", cycles)


def test_each_package_imports_only_packages_below_it(modules: dict[str, Module]) -> None:
    found = layer_violations(modules)
    assert not found, _listing("imports against the layer order", found)


def test_no_private_name_is_used_across_modules(modules: dict[str, Module]) -> None:
    found, _ = private_uses(modules)
    assert not found, _listing("private names used across modules", found)


def test_no_module_is_over_the_line_limit(modules: dict[str, Module]) -> None:
    found = oversized(modules)
    assert not found, _listing(f"modules over {MAX_LINES} lines", found)


# -- the checker, on planted packages ------------------------------------------------


def _plant(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    root = tmp_path / PACKAGE
    for rel, text in {"__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return load_modules(root)


CLEAN = {
    "core/__init__.py": "",
    "core/types.py": "class Sealed:\n    _cache = None\n    def _digest(self):\n"
    "        return self._cache\n",
    "detect/__init__.py": "",
    "detect/fingerprint.py": "from kairo_guard.core.types import Sealed\n"
    "import collections\nP = collections.namedtuple('P', 'a')(1)._replace(a=2)\n"
    "def f(span):\n    return span._attributes, super()._x\n",
}


def test_when_the_package_is_clean_then_every_check_passes(tmp_path: Path) -> None:
    planted = _plant(tmp_path, CLEAN)
    root = tmp_path / PACKAGE
    assert find_cycles(planted) == []
    assert layer_violations(planted, root) == []
    violations, third_party = private_uses(planted, root)
    assert violations == []
    assert third_party == ["kairo_guard/detect/fingerprint.py:5: span._attributes"]
    assert oversized(planted, root) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"core/a.py": "import kairo_guard.core.b\n", "core/b.py": "from . import a\n"},
            [["kairo_guard.core.a", "kairo_guard.core.b", "kairo_guard.core.a"]],
        ),
        (
            {
                "core/a.py": "def f():\n    from kairo_guard.core import b\n",
                "core/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from kairo_guard.core.c import X\n",
                "core/c.py": "import importlib\nimportlib.import_module('kairo_guard.core.a')\n",
            },
            [
                [
                    "kairo_guard.core.a",
                    "kairo_guard.core.b",
                    "kairo_guard.core.c",
                    "kairo_guard.core.a",
                ]
            ],
        ),
    ],
    ids=["direct-and-relative", "in-function-type-checking-and-by-name"],
)
def test_when_modules_import_each_other_then_the_cycle_is_reported(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    assert find_cycles(_plant(tmp_path, {"core/__init__.py": "", **files})) == expected


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {
                "otel/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from kairo_guard.guard import Guard\n",
                "guard.py": "",
            },
            ["kairo_guard/otel/x.py:3: otel imports guard (kairo_guard.guard)"],
        ),
        (
            {"store/x.py": "def f():\n    import kairo_guard.audit.log\n", "audit/log.py": ""},
            ["kairo_guard/store/x.py:2: store imports audit (kairo_guard.audit.log)"],
        ),
        (
            {"detect/x.py": "from kairo_guard import Guard\n"},
            ["kairo_guard/detect/x.py:1: detect imports the facade (kairo_guard)"],
        ),
        (
            {"widgets/x.py": "from kairo_guard.core import y\n", "core/y.py": ""},
            ["kairo_guard/widgets/x.py:1: package without a layer in kairo_guard.core.y"],
        ),
    ],
    ids=["type-checking-import-of-guard", "store-imports-audit", "facade", "unknown-package"],
)
def test_when_a_package_imports_upward_then_file_and_line_are_reported(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    planted = _plant(tmp_path, files)
    assert layer_violations(planted, tmp_path / PACKAGE) == expected


@pytest.mark.parametrize(
    ("use", "expected"),
    [
        ("from kairo_guard.core.types import _helper\n", "imports _helper from"),
        ("from kairo_guard.core import types\ntypes._helper()\n", "types._helper"),
        ("def f(sealed):\n    return sealed._cache\n", "sealed._cache"),
        ("def f(guard):\n    return guard.codec._digest()\n", "guard.codec._digest"),
    ],
    ids=["from-import", "module-attribute", "object-attribute", "nested-attribute"],
)
def test_when_a_private_name_crosses_modules_then_it_is_reported(
    tmp_path: Path, use: str, expected: str
) -> None:
    files = {**CLEAN, "core/types.py": CLEAN["core/types.py"] + "def _helper():\n    pass\n"}
    files["detect/user.py"] = use
    violations, _ = private_uses(_plant(tmp_path, files), tmp_path / PACKAGE)
    assert len(violations) == 1
    assert violations[0].startswith("kairo_guard/detect/user.py:")
    assert expected in violations[0]


def test_when_a_module_is_too_long_then_it_is_reported(tmp_path: Path) -> None:
    planted = _plant(tmp_path, {"core/long.py": "x = 1\n" * (MAX_LINES + 1)})
    assert oversized(planted, tmp_path / PACKAGE) == [
        f"kairo_guard/core/long.py: {MAX_LINES + 1} lines"
    ]
