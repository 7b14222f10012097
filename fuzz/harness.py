"""What every harness shares: findings, a reader of fuzz input, fixed keys and a clock.

The keys are fixed (and public: they are written here) so that the seed corpora hold
seals, API keys and tokens that are genuine under them on every run: a mutated seed
then tests the parsers where it matters, one byte away from something that verifies.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kairo_guard.core.keys import KeyRing
from kairo_guard.core.signing import SignerKeys

T = TypeVar("T")
R = TypeVar("R")
E = TypeVar("E", bound=Exception)

NOW = 1_767_225_600
"""The harnesses' clock (2026-01-01T00:00:00Z): seeds made at it stay valid."""
CORPUS = Path(__file__).resolve().parent / "corpus"
"""Seed corpora, one folder per target."""


class Finding(AssertionError):
    """An invariant broke on a fuzz input (atheris reports it as a crash)."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`Finding` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise Finding(message)


def attempt(fn: Callable[[], R], allowed: tuple[type[E], ...], what: str) -> R | E:
    """Return what ``fn()`` returns, or the exception it raised if it is one of the
    ``allowed`` (documented) types; any other exception is a :class:`Finding`."""
    try:
        return fn()
    except allowed as exc:
        return exc
    except Exception as exc:
        names = ", ".join(t.__name__ for t in allowed) or "nothing"
        raise Finding(f"{what} raised {type(exc).__name__}: {exc!r} (documented: {names})") from exc


KNOWN_FINDINGS: dict[str, str] = {}  # none open: F1-F3 are fixed
"""Findings reported and tested (``xfail``) that the harnesses step over, so that a
campaign goes on to find others. Each is announced on stderr the first time it recurs."""
_seen: set[str] = set()


def known_finding(name: str) -> None:
    """Note that an input hit the known finding ``name`` (the harness then skips the
    invariants it breaks for this input)."""
    if name not in _seen:
        _seen.add(name)
        sys.stderr.write(f"KNOWN FINDING {name} recurred: {KNOWN_FINDINGS[name]}\n")


def never_raises(fn: Callable[[], R], what: str) -> R:
    """Return what ``fn()`` returns; any exception is a :class:`Finding` (for code
    documented never to raise)."""
    try:
        return fn()
    except Exception as exc:
        raise Finding(f"{what} raised {type(exc).__name__}: {exc!r} (documented: nothing)") from exc


def _key(name: str) -> bytes:
    return hashlib.sha256(b"kairo-guard fuzz key " + name.encode()).digest()


def key_ring(signing: str = "k1") -> KeyRing:
    """The harnesses' HMAC key ring: ``k1`` and ``k0`` (a rotated-out key that still
    verifies); ``signing`` names the one that signs."""
    return KeyRing(keys={"k1": _key("k1"), "k0": _key("k0")}, signing_key_id=signing)


def signer_keys() -> SignerKeys:
    """The harnesses' Ed25519 vetting key ``s1``."""
    return SignerKeys({"s1": Ed25519PrivateKey.from_private_bytes(_key("s1"))}, "s1")


def scratch_dir(name: str) -> Path:
    """A fresh temporary directory, removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix=f"kairo-fuzz-{name}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def seeds(target: str) -> list[bytes]:
    """The seed inputs of ``target``, in name order."""
    return [p.read_bytes() for p in sorted((CORPUS / target).iterdir()) if p.is_file()]


def parse_request(data: bytes) -> tuple[str | None, str, list[tuple[bytes, bytes]]]:
    """``(peer, path, headers)`` of a request written as text: a first line ``<peer>
    <path>`` (peer ``-`` for none), then one header a line, ``name: value`` (one space
    after the colon is dropped; a line without a colon is not a header)."""
    first, *rest = data.split(b"\n")
    peer, _, path = first.decode("latin-1").partition(" ")
    headers = []
    for line in rest:
        name, colon, value = line.partition(b":")
        if colon:
            headers.append((name, value[1:] if value.startswith(b" ") else value))
    return (None if peer == "-" else peer), path, headers


class Reader:
    """Reads a fuzz input as a few small choices followed by a body: every input is
    valid, missing bytes read as zero, and seeds stay readable."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def byte(self) -> int:
        """The next byte (0 past the end)."""
        at = self._at
        self._at += 1
        return self._data[at] if at < len(self._data) else 0

    def choice(self, options: Sequence[T]) -> T:
        """One of ``options``, chosen by the next byte."""
        return options[self.byte() % len(options)]

    def pick(self, options: Sequence[T], other: Callable[[], T]) -> T:
        """One of ``options``, or what ``other()`` reads, chosen by the next byte."""
        at = self.byte() % (len(options) + 1)
        return other() if at == len(options) else options[at]

    def number(self, size: int) -> int:
        """An unsigned big-endian number of the next ``size`` bytes."""
        value = 0
        for _ in range(size):
            value = value << 8 | self.byte()
        return value

    def chunk(self) -> bytes:
        """A length byte, then that many bytes."""
        size = self.byte()
        found = self._data[self._at : self._at + size]
        self._at += size
        return found

    def rest(self) -> bytes:
        """Every byte not read yet."""
        found = self._data[self._at :]
        self._at = len(self._data)
        return found
