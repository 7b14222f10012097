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
from kairo_guard.core.signing import ENV_SIGNER_KEY, ENV_VERIFY_KEYS, SignerKeys, VerifyKeys

ENV_KEY_FILE = "KAIRO_GUARD_KEY_FILE"
"""Environment variable naming the key file (default: ``<home>/keys.json``)."""
KEY_FILE_NAME = "keys.json"
"""The key file's name in the state directory."""


def write_key_file(path: Path, ring: KeyRing, *, overwrite: bool = False) -> None:
    """Write ``ring`` to ``path`` with mode 0600, refusing to overwrite unless asked.

    Raises:
        KeyringError: if the file exists (and ``overwrite`` is false) or cannot be written.
    """
    _write_private(path, ring.to_json(), overwrite)


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


SIGNER_FILE_NAME = "signer.json"
"""The vetting role's private Ed25519 keys in the state directory (mode 0600)."""
VERIFY_FILE_NAME = "verify-keys.json"
"""The public keys permitting labels are verified with, in the state directory."""


def write_signer_file(path: Path, signer: SignerKeys, *, overwrite: bool = False) -> None:
    """Write the signer's private keys with mode 0600 (as :func:`write_key_file`).

    Raises:
        KeyringError: if the file exists (and ``overwrite`` is false) or cannot be written.
    """
    _write_private(path, signer.to_json(), overwrite)


def write_verify_file(path: Path, keys: VerifyKeys) -> None:
    """Write public verification keys (mode 0644: anyone may read them).

    Raises:
        KeyringError: if the file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(keys.to_json())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise KeyringError(f"cannot write {path}: {exc.strerror}") from exc


def load_signer(home: Path, *, env: Mapping[str, str] | None = None) -> SignerKeys | None:
    """Return the signing role's keys (``KAIRO_GUARD_SIGNER_KEY``, else ``signer.json``
    in ``home``), or None when this process holds none.

    Raises:
        KeyringError: a key that is there but unusable (malformed, readable by others).
    """
    environ = os.environ if env is None else env
    value = environ.get(ENV_SIGNER_KEY)
    if value:
        return SignerKeys.from_value(value)
    path = home / SIGNER_FILE_NAME
    data = _read_private(path)
    return None if data is None else SignerKeys.from_json(data)


def load_verify_keys(home: Path, *, env: Mapping[str, str] | None = None) -> VerifyKeys:
    """Return the public keys permitting labels may be signed with:
    ``KAIRO_GUARD_VERIFY_KEYS``, else ``verify-keys.json`` in ``home`` (none: empty).

    Raises:
        KeyringError: keys that are there but malformed.
    """
    environ = os.environ if env is None else env
    value = environ.get(ENV_VERIFY_KEYS)
    if value:
        return VerifyKeys.from_value(value)
    path = home / VERIFY_FILE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return VerifyKeys({})
    except OSError as exc:
        raise KeyringError(f"cannot read {path}: {exc.strerror}") from exc
    return VerifyKeys.from_json(data)


def _write_private(path: Path, data: bytes, overwrite: bool) -> None:
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
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_private(path: Path) -> bytes | None:
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyringError(f"key file {path} is readable by others; chmod 600 it")
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyringError(f"cannot read key file {path}: {exc.strerror}") from exc
