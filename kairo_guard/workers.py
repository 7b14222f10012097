"""Guards in worker processes (DataLoader workers, multiprocessing pools, Ray tasks).

A live :class:`~kairo_guard.guard.Guard` holds what does not cross a process boundary: a
database connection, locks, an audit file descriptor under ``flock`` with entries
waiting in a buffer, and a flusher thread. So a worker never receives one. It receives a
:class:`GuardSpec` (``guard.spec()``): the state directory, the configuration and the
key material a worker is entitled to, the HMAC ring and the public verification keys,
never the vetting role's signing key. ``Guard.from_spec(spec)`` opens that process's
guard the first time it is called there and returns the same one after.

Pickling a ``Guard`` raises (the error names ``guard.spec()``). After ``fork`` the
child drops what it inherited: the spec cache is emptied, and every guard the parent
had open is disarmed in the child. Its parts are replaced by stubs that raise
:class:`GuardForked`, its audit entries the parent had not yet written are discarded
(the parent writes them, once), and its connection and descriptors are left untouched
(closing them could disturb the parent's locks), so the parent's handles are neither
used nor released by the child. This module knows guards only as objects (it sits
below :mod:`kairo_guard.guard`, which opens them).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from kairo_guard.core.exceptions import KairoGuardError

T = TypeVar("T")

_PARTS = (
    "store", "audit", "net", "fingerprints", "pii", "sealer", "vetting", "telemetry_vetting",
    "shards", "checks", "tenancy", "indexer", "retention",
)  # fmt: skip
_live: weakref.WeakSet[Any] = weakref.WeakSet()
_opened: dict[GuardSpec, Any] = {}
_opened_lock = threading.Lock()
_inherited: list[object] = []  # parts of disarmed guards: kept, never closed, in the child


class GuardForked(KairoGuardError):
    """A guard opened before ``fork`` was used in the child: open one there instead
    (``Guard.from_spec(spec)``)."""


@dataclass(frozen=True)
class GuardSpec:
    """What a worker needs to open its own guard: picklable, no live handle.

    ``key`` is the HMAC key ring (its key-file JSON, so the pseudonym key stays the
    same) and ``verify_keys`` the public keys (``KAIRO_GUARD_VERIFY_KEYS`` form); no
    signing key travels.
    """

    home: str
    key: str
    verify_keys: str
    config_file: str | None
    default_mode: str
    pii_gate: bool | None
    db_url: str | None


def opened(spec: GuardSpec, open_guard: Callable[[GuardSpec], T]) -> T:
    """This process's guard for ``spec``: ``open_guard(spec)`` the first time, the same
    guard after (a fork starts the child afresh)."""
    with _opened_lock:
        found = _opened.get(spec)
        if found is None:
            found = _opened[spec] = open_guard(spec)
        return found


def forget(guard: object) -> None:
    """A guard is closed: the next :func:`opened` of its spec opens a new one."""
    with _opened_lock:
        for spec in [s for s, g in _opened.items() if g is guard]:
            del _opened[spec]


def track(guard: object) -> None:
    """Remember an open guard, so a fork disarms it in the child."""
    _live.add(guard)


class _Disarmed:
    """Stands for a part of a guard inherited through ``fork``: any use raises."""

    def __init__(self, name: str, pid: int) -> None:
        self._name, self._pid = name, pid

    def __getattr__(self, attribute: str) -> NoReturn:
        raise GuardForked(
            f"this guard was opened in process {self._pid}, before a fork: its "
            f"{self._name} cannot be used here; pass guard.spec() to the worker and open "
            "Guard.from_spec(spec) in it"
        )


def _disarm(guard: Any, parent: int) -> None:
    audit: Any = guard.__dict__.get("audit")
    if audit is not None:
        audit.disown()  # the parent writes what it buffered; the child writes nothing of it
    for name in _PARTS:
        part = guard.__dict__.get(name)
        if part is not None:
            _inherited.append(part)
            guard.__dict__[name] = _Disarmed(name, parent)
    guard.__dict__["forked_from"] = parent


def _after_fork_in_child() -> None:
    global _opened_lock  # a lock held at fork time would stay held in the child
    _opened_lock = threading.Lock()
    _opened.clear()  # the parent's guards, not this process's: never used, never closed
    parent = os.getppid()
    for guard in list(_live):
        _disarm(guard, parent)
    _live.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
