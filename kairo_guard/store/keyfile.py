"""The key file in the state directory: written once with mode 0600, refused when others
can read it. The key ring itself (parsing, subkeys, pseudonyms) is
:class:`kairo_guard.core.keys.KeyRing`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from kairo_guard.core.exceptions import KeyringError
from kairo_guard.core.keys import ENV_KEY, KeyRing

ENV_KEY_FILE = "KAIRO_GUARD_KEY_FILE"
"""Environment variable naming the key file (default: ``<home>/keys.json``)."""
KEY_FILE_NAME = "keys.json"
"""The key file's name in the state directory."""


def write_key_file(path: Path, ring: KeyRing, *, overwrite: bool = False) -> None:
    """Write ``ring`` to ``path`` with mode 0600, refusing to overwrite unless asked.

    Raises:
        KeyringError: if the file exists (and ``overwrite`` is false) or cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise KeyringError(f"{path} exists; refusing to overwrite a key file") from exc
    except OSError as exc:
        raise KeyringError(f"cannot create key file {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, ring.to_json())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_key_file(path: Path) -> KeyRing:
    """Read a key file, refusing one that others can read.

    Raises:
        KeyringError: if the file is missing, readable by group/others, or malformed.
    """
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyringError(f"key file {path} is readable by others; chmod 600 it")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyringError(
            f"no key: set {ENV_KEY} or run 'kairo-guard keys init' (looked for {path})"
        ) from exc
    except OSError as exc:
        raise KeyringError(f"cannot read key file {path}: {exc.strerror}") from exc
    return KeyRing.from_json(data)


def load_key_ring(home: Path, *, env: Mapping[str, str] | None = None) -> KeyRing:
    """Return the key ring: ``KAIRO_GUARD_KEY``, else the key file.

    Raises:
        KeyringError: if neither gives a usable key.
    """
    environ = os.environ if env is None else env
    value = environ.get(ENV_KEY)
    if value:
        return KeyRing.from_env_value(value)
    key_file = environ.get(ENV_KEY_FILE)
    return read_key_file(Path(key_file) if key_file else home / KEY_FILE_NAME)
