"""The files of a tenant dataset on disk: written all or nothing, replaced atomically.

A new dataset is written into a hidden temporary sibling of its directory
(``.NAME.XXXX``) and renamed into place only when complete (:func:`staged_directory`),
so a build that fails at any step leaves nothing behind and can simply be run again.
A pruned dataset's files are replaced one by one through synced temporary files
(:func:`stage_file`), records first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from kairo_guard.tenancy.manifest import MANIFEST_FILE, RECORDS_FILE, DatasetError


def stage_file(path: Path, chunks: Iterable[bytes]) -> Path:
    """Write ``chunks`` to a synced temporary file beside ``path``; return its path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def write_file(path: Path, chunks: Iterable[bytes]) -> None:
    """Write a file atomically (temporary file in the same directory, then rename)."""
    os.replace(stage_file(path, chunks), path)


def _check_free(target: Path) -> None:
    """Raise DatasetError ``dataset.exists`` unless ``target`` is missing or an empty
    directory."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DatasetError("dataset.exists", f"{target} exists and is not an empty directory")


@contextlib.contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield a new private directory beside ``target``, renamed to ``target`` at the
    end of the block; on any error before that it is removed with what it holds.

    ``target`` may be missing or an empty directory (replaced by the rename).

    Raises:
        DatasetError: ``dataset.exists`` if ``target`` is a file or a non-empty directory.
    """
    _check_free(target)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        _check_free(target)  # filled meanwhile by someone else: never merge into it
        os.replace(staging, target)  # atomic, and replaces an empty directory (POSIX)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def dataset_files(path: Path) -> list[Path]:
    """Return a dataset directory's own files (and their temporary siblings)."""
    ours = (RECORDS_FILE, MANIFEST_FILE)
    try:
        return [
            p
            for p in path.iterdir()
            if p.name in ours or any(p.name.startswith(f".{name}.") for name in ours)
        ]
    except FileNotFoundError:
        return []


def remove_dataset_files(path: Path) -> None:
    """Delete a dataset's files, then its directory if nothing else is in it."""
    for file in dataset_files(path):
        file.unlink(missing_ok=True)
    # missing, or it holds files that are not the dataset's: left in place
    with contextlib.suppress(OSError):
        path.rmdir()
