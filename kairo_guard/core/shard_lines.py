"""Lines of vetted shards as a shared sink reads them: the scan's hot path.

A record of a vetted shard is written as its canonical JSON with the ``kp1`` seal as
the last member, ``{...,"_kairo":"kp1.<shard id>.<digest>"}``. The bytes before that
member, closed with ``}``, are the record's canonical content exactly when they hash to
the seal's digest, so such a line is checked without parsing it: hash, then look the
shard and the digest up. :func:`members` does that for a run of lines at once (natively
when the extension is built, :func:`members_python` otherwise: the specification and
the test oracle of the native one).

A *view* maps the id of each shard whose records need no content check at this sink to
``(index, dirty, rule, owner)``: its ``{digest: number}`` index, the numbers of its
records that matched fingerprints indexed after it was vetted, and the audit rule and
owner of an allowed record of it (see :meth:`kairo_guard.enforce.check.SinkCheck.take_vetted`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from kairo_guard.core.shard import SHARD_SEAL_LENGTH, SHARD_SEAL_VERSION
from kairo_guard.core.types import SEAL_FIELD

try:
    import kairo_guard.core._merkle as native  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - built at install; the Python path decides the same
    native = None

MEMBER = f',"{SEAL_FIELD}":"{SHARD_SEAL_VERSION}.'.encode("ascii")
"""How the seal member of a vetted shard's line begins."""
TAIL = len(MEMBER) - 4 + SHARD_SEAL_LENGTH + 2
"""Bytes from that member to the end of the line: the member, the seal, ``"}``."""

ViewEntry = tuple[dict[str, int], "set[int] | frozenset[int]", str, "str | None"]
"""A shard in a view: its index, its dirty records, an allowed record's rule and owner."""
Row = tuple[int, Any, str, str, "str | None"]
"""An audit row: ``(position, outcome, rule, digest, owner)``."""


def may_be_member(line: bytes) -> bool:
    """Whether ``line`` ends as a vetted shard's line does (cheap; decides nothing)."""
    at = len(line) - TAIL
    return (
        at > 1  # '{,"_kairo"...' is no line sealed_line writes (a sealed {} has no comma)
        and line[:1] == b"{"  # an object: bytes sealed whole are not split here
        and line[at : at + len(MEMBER)] == MEMBER
        and line.endswith(b'"}')
    )


def members_python(
    lines: Sequence[object],
    start: int,
    stop: int,
    view: Mapping[str, ViewEntry],
    outcome: object,
    position: int,
) -> tuple[int, list[Row]]:
    """From ``lines[start]`` up to ``lines[stop]``, take each line that is a clean record
    of a shard in ``view`` and give it its audit row (numbered from ``position``); stop
    at the first that is not one. Return where the run ended and the rows."""
    if start < 0 or position < 0:
        raise ValueError("start and position must not be negative")
    rows: list[Row] = []
    end = min(stop, len(lines))
    for i in range(start, end):
        line = lines[i]
        if type(line) is not bytes or not may_be_member(line):
            return i, rows
        at = len(line) - TAIL
        seal = line[at + len(MEMBER) - 4 : -2].decode("latin-1")
        digest = hashlib.sha256(line[:at] + b"}").hexdigest()
        entry = view.get(seal[4:36])
        if seal[36] != "." or seal[37:] != digest or entry is None:
            return i, rows
        index, dirty, rule, owner = entry
        number = index.get(digest)
        if number is None or number in dirty:
            return i, rows
        rows.append((position + i - start, outcome, rule, digest, owner))
    return max(start, end), rows


members = members_python if native is None else native.members
""":func:`members_python`, natively when the extension is built."""
