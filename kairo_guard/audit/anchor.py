"""The audit log's anchor: its signed head, recorded outside the log directory.

A signed head proves which entries its key holder wrote, but not that the newest head
is the one on disk: restore an older copy of both ``audit.jsonl`` and ``audit.head``,
or delete both, and the pair verifies. So after every head the writer also records
the head's count, last hash and end offset somewhere the log directory's owner cannot
roll back with it (the state store: a PostgreSQL database for production, and an
OpenTelemetry metric that leaves the machine). The anchor only moves forward.

A log *behind* its anchor (fewer entries, or another entry where the anchor's last one
was) was rolled back, deleted or rewritten: the writer refuses to append to it (so it
cannot move the anchor past the evidence) and ``kairo-guard audit verify`` fails.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from kairo_guard.audit.verify import parse_entry
from kairo_guard.core.anchor import Anchor, AnchorStore
from kairo_guard.core.exceptions import AuditIntegrityError, StoreError

_LOG = logging.getLogger(__name__)
DEFAULT_LOG_ID = "default"
"""The anchor of a state directory's own log (one log per state directory)."""
_MAX_LINE = 16 * 1024 * 1024
_BLOCK = 64 * 1024


class AuditAnchor:
    """Checks a log against its anchor and advances the anchor after each head.

    Args:
        store: where the anchor is kept.
        log_id: which log (one per state directory: :data:`DEFAULT_LOG_ID`).
        observe: called with each anchor recorded (the OpenTelemetry gauges).
        failed: called each time the store could not record one (a counter).
    """

    def __init__(
        self,
        store: AnchorStore,
        log_id: str = DEFAULT_LOG_ID,
        observe: Callable[[Anchor], None] | None = None,
        failed: Callable[[], None] | None = None,
    ) -> None:
        self.store, self.log_id, self._observe, self._failed = store, log_id, observe, failed

    def load(self) -> Anchor | None:
        """The recorded anchor (None for a log never anchored)."""
        return self.store.get_audit_anchor(self.log_id)

    def advance(self, anchor: Anchor) -> None:
        """Record a new head (the store keeps the larger count). While the store cannot
        be written, the head is still reported to ``observe``, the failure is logged and
        the next head records again (it only moves forward): the log itself is durable,
        and the decisions that need the store fail closed on their own."""
        if self._observe is not None:
            self._observe(anchor)
        try:
            self.store.advance_audit_anchor(self.log_id, anchor)
        except StoreError as exc:
            if self._failed is not None:
                self._failed()
            _LOG.warning("kairo-guard: audit head %d not anchored in the store: %s",
                         anchor.count, exc)  # fmt: skip

    def check(self, fd: int, count: int) -> None:
        """Raise unless the open log ``fd`` (``count`` intact entries) is at or past
        its anchor, with the anchored entry where the anchor says.

        Raises:
            AuditIntegrityError: the log is behind its anchor (rolled back, deleted or
                rewritten).
            StoreError: the anchor cannot be read.
        """
        problem = behind_anchor(fd, count, self.load())
        if problem is not None:
            raise AuditIntegrityError(problem)


def behind_anchor(fd: int, count: int, anchor: Anchor | None) -> str | None:
    """Why the log ``fd`` with ``count`` intact entries is behind ``anchor``, or None."""
    if anchor is None or anchor.count == 0:
        return None
    size = os.fstat(fd).st_size
    if count < anchor.count or size < anchor.end:
        shared = " (or another state directory has the same KAIRO_GUARD_AUDIT_LOG_ID)"
        return (
            f"the log holds {count} entries but its anchor outside the log directory "
            f"records {anchor.count}: it was rolled back or deleted{shared if not count else ''}"
        )
    line = _line_ending_at(fd, anchor.end)
    try:
        entry, digest = parse_entry(line) if line is not None else ({}, "")
    except ValueError:
        entry, digest = {}, ""
    if entry.get("seq") != anchor.count - 1 or digest != anchor.hash:
        return (
            f"entry {anchor.count} is not the one its anchor outside the log directory "
            "records: the log was replaced or rewritten"
        )
    return None


def _line_ending_at(fd: int, end: int) -> bytes | None:
    """The line whose newline is the byte before ``end`` (without it), or None."""
    if end < 1 or os.pread(fd, 1, end - 1) != b"\n":
        return None
    buf, pos = b"", end - 1
    while pos > 0 and len(buf) <= _MAX_LINE:
        start = max(0, pos - _BLOCK)
        buf, pos = os.pread(fd, pos - start, start) + buf, start
        cut = buf.rfind(b"\n")
        if cut >= 0:
            return buf[cut + 1 :]
    return buf if pos == 0 else None
