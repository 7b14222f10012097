"""An audit log's anchor as the store keeps it (:mod:`kairo_guard.audit.anchor` checks a log
against it; the store keeps it: the two layers meet here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Anchor:
    """A signed head as recorded outside the log: ``count`` entries, the last one's
    ``hash``, ending at byte ``end`` of the log."""

    count: int
    hash: str
    end: int
    ts: float


class AnchorStore(Protocol):
    """Where anchors are kept (the state store implements it)."""

    def get_audit_anchor(self, log_id: str) -> Anchor | None:
        """The anchor recorded for ``log_id``, or None."""
        ...

    def advance_audit_anchor(self, log_id: str, anchor: Anchor) -> None:
        """Record ``anchor`` unless one with at least as many entries is recorded."""
        ...
