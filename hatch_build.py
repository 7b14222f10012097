"""Hatch build hook: compiles the native parts.

- ``kairo_guard/detect/_winnow.c``, the fingerprinting core; without it the package
  falls back to its pure-Python reference of the same scheme (slower; it logs a warning
  when used);
- ``kairo_guard/ingest/_spoolw.c``, the ingestion spool's writer thread (links OpenSSL's
  libcrypto, which CPython's ``hashlib`` uses too, and zlib); without it the middleware
  spools through a writer process (:mod:`kairo_guard.ingest.spool_main`);
- ``kairo_guard/ingest/_gate.c``, the middleware's admission of its common request
  (:mod:`kairo_guard.ingest.fast_path`) and the API key cache it reads (libcrypto's
  SHA-256); without it the same checks run in Python;
- ``kairo_guard/ingest/_door.c``, the middleware's admitted request served in C
  (:mod:`kairo_guard.ingest.door`); without it the same steps in Python;
- ``kairo_guard/detect/_shapes.c``, the PII gate's one-pass prefilters; without it the
  same tests as regular expressions;
- ``kairo_guard/core/_merkle.c``, shard Merkle roots and the scan of vetted shards' lines
  (:mod:`kairo_guard.core.shard_lines`; libcrypto's SHA-256); without it the same in
  Python.

Editable installs (``pip install -e .``) get each shared library beside its source, in
the source tree (git ignores them); wheels get them as forced includes, and are then
tagged for this interpreter and platform instead of ``py3-none-any``. Without a working
C compiler, the Python headers (or, for the writer, the OpenSSL and zlib headers) the
install still succeeds, with the fallbacks above. Set ``KAIRO_GUARD_NO_NATIVE=1`` to
skip the compilation on purpose.
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

EXTENSIONS = (
    # (source, libraries, what it is, what is used without it)
    (Path("kairo_guard/detect/_winnow.c"), [], "fingerprinting extension",
     "the slower pure-Python fallback"),
    (Path("kairo_guard/ingest/_spoolw.c"), ["-lcrypto", "-lz", "-pthread"],
     "spool writer extension", "the spool writer process"),
    (Path("kairo_guard/ingest/_gate.c"), ["-lcrypto"],
     "fast path admission extension", "the same checks in Python"),
    (Path("kairo_guard/ingest/_door.c"), ["-pthread"],
     "native door extension", "the middleware's Python fast path"),
    (Path("kairo_guard/detect/_shapes.c"), [],
     "prefilter extension", "the same tests as regular expressions"),
    (Path("kairo_guard/core/_merkle.c"), ["-lcrypto"],
     "Merkle root and vetted-line extension", "the same in Python"),
)  # fmt: skip
FLAGS = [
    "-O3",
    "-fPIC",
    "-shared",
    "-fvisibility=hidden",
    "-Wall",
    "-Wno-deprecated-declarations",
]  # fmt: skip (OpenSSL 3 deprecates SHA256_Init)


class CustomBuildHook(BuildHookInterface):
    """Compiles the extension for wheel builds, standard and editable."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("KAIRO_GUARD_NO_NATIVE"):
            return
        root = Path(self.root)
        if version != "editable":
            self._tmp = tempfile.mkdtemp(prefix="kairo-guard-build-")
        for source, libraries, what, fallback in EXTENSIONS:
            name = f"{source.stem}{sysconfig.get_config_var('EXT_SUFFIX')}"
            folder = root / source.parent if version == "editable" else Path(self._tmp)
            target = folder / name
            if not self._compile(root / source, target, libraries, what, fallback):
                continue
            if version != "editable":
                build_data["force_include"][str(target)] = str(source.parent / name)
                build_data["pure_python"] = False
                build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    def _compile(
        self, source: Path, target: Path, libraries: list[str], what: str, fallback: str
    ) -> bool:
        compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
        include = sysconfig.get_paths()["include"]
        if compiler is None or not (Path(include) / "Python.h").exists():
            self.app.display_warning(
                f"kairo-guard: no C compiler or no Python headers; the {what} is not "
                f"built ({fallback} is used)"
            )
            return False
        partial = target.with_name(target.name + ".tmp")
        command = [compiler, *FLAGS, f"-I{include}", str(source), "-o", str(partial), *libraries]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            self.app.display_warning(
                f"kairo-guard: compiling the {what} failed; {fallback} is used:\n{detail}"
            )
            partial.unlink(missing_ok=True)
            return False
        partial.replace(target)  # atomic: a running process never loads half a file
        self.app.display_info(f"kairo-guard: built {target.name}")
        return True
