"""Hatch build hook: compiles the fingerprinting core (``kairo_guard/detect/_winnow.c``).

Editable installs (``pip install -e .``) get the shared library beside its source, in
the source tree (git ignores it); wheels get it as a forced include, and are then tagged
for this interpreter and platform instead of ``py3-none-any``. Without a working C
compiler and the Python headers the install still succeeds: the package then falls back
to its pure-Python reference of the same scheme (slower; it logs a warning when used).
Set ``KAIRO_GUARD_NO_NATIVE=1`` to skip the compilation on purpose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("kairo_guard/detect/_winnow.c")
FLAGS = ["-O3", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall"]


class CustomBuildHook(BuildHookInterface):
    """Compiles the extension for wheel builds, standard and editable."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("KAIRO_GUARD_NO_NATIVE"):
            return
        root = Path(self.root)
        name = f"_winnow{sysconfig.get_config_var('EXT_SUFFIX')}"
        if version == "editable":
            target = root / SOURCE.parent / name
        else:
            self._tmp = tempfile.mkdtemp(prefix="kairo-guard-build-")
            target = Path(self._tmp) / name
        if not self._compile(root / SOURCE, target):
            return
        if version != "editable":
            build_data["force_include"][str(target)] = str(SOURCE.parent / name)
            build_data["pure_python"] = False
            build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    def _compile(self, source: Path, target: Path) -> bool:
        compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
        include = sysconfig.get_paths()["include"]
        if compiler is None or not (Path(include) / "Python.h").exists():
            self.app.display_warning(
                "kairo-guard: no C compiler or no Python headers; the fingerprinting "
                "extension is not built (the slower pure-Python fallback is used)"
            )
            return False
        partial = target.with_name(target.name + ".tmp")
        command = [compiler, *FLAGS, f"-I{include}", str(source), "-o", str(partial)]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            self.app.display_warning(
                "kairo-guard: compiling the fingerprinting extension failed; the slower "
                f"pure-Python fallback is used:\n{detail}"
            )
            partial.unlink(missing_ok=True)
            return False
        partial.replace(target)  # atomic: a running process never loads half a file
        self.app.display_info(f"kairo-guard: built {target.name}")
        return True
