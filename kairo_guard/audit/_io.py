"""File helpers of the audit writer."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import orjson

from kairo_guard.audit.verify import RESERVED_KEYS, TORN_PREFIX
from kairo_guard.core.exceptions import ConfigError
from kairo_guard.core.types import JSONValue


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextmanager
def flocked(fd: int, how: int) -> Iterator[None]:
    """Hold ``flock(fd, how)`` for the block."""
    fcntl.flock(fd, how)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def move_aside(
    fd: int, dir_fd: int, directory: Path, end: int, size: int, now: float
) -> tuple[str, bytes]:
    """Copy the log's bytes ``end:size`` to a new ``audit.torn.<time>`` file, durably,
    then cut the log back to ``end``; return the file's name and the bytes."""
    fragment = os.pread(fd, size - end, end)
    stamp, n = int(now), 0
    while True:
        name = f"{TORN_PREFIX}{stamp}" + (f".{n}" if n else "")
        try:
            out = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            n += 1
    try:
        write_all(out, fragment)
        os.fsync(out)
    finally:
        os.close(out)
    os.fsync(dir_fd)
    os.ftruncate(fd, end)
    os.fsync(fd)
    return name, fragment


def entry_members(entry: Mapping[str, JSONValue]) -> bytes:
    """Serialise the caller's members as they will sit between ``prev`` and ``hash``."""
    if not RESERVED_KEYS.isdisjoint(entry):
        raise ConfigError(f"audit entries may not set {sorted(RESERVED_KEYS & set(entry))}")
    try:
        raw = orjson.dumps(entry if type(entry) is dict else dict(entry))
    except orjson.JSONEncodeError as exc:
        raise ConfigError(f"an audit entry does not encode as JSON: {exc}") from exc
    return b"," + raw[1:-1] if len(raw) > 2 else b""
