"""The ``audit_anchor`` table: each audit log's newest signed head, kept outside the log
directory (:mod:`kairo_guard.audit.anchor`).

:class:`AnchorTables` implements :class:`~kairo_guard.core.anchor.AnchorStore` for the
state store (a mixin over its ``db``). The statements are plain SQL that SQLite and
PostgreSQL both run (``ON CONFLICT ... DO UPDATE``).
"""

from __future__ import annotations

from typing import Any

from kairo_guard.core.anchor import Anchor

ANCHOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_anchor (
    log_id TEXT PRIMARY KEY,
    count BIGINT NOT NULL,
    hash TEXT NOT NULL,
    end_offset BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL
);
"""
# The anchor only moves forward: a writer whose log was rolled back refuses to open, and
# an older head arriving late (another process's) never replaces a newer one.
_ADVANCE = (
    "INSERT INTO audit_anchor (log_id, count, hash, end_offset, ts) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (log_id) DO UPDATE SET count = excluded.count, hash = excluded.hash,"
    " end_offset = excluded.end_offset, ts = excluded.ts"
    " WHERE excluded.count > audit_anchor.count"
)


class AnchorTables:
    """Audit anchors, one row per log."""

    db: Any  # the store's database (SQLite or PostgreSQL)

    def get_audit_anchor(self, log_id: str) -> Anchor | None:
        """See :meth:`~kairo_guard.core.anchor.AnchorStore.get_audit_anchor`."""
        rows = self.db.query(
            "SELECT count, hash, end_offset, ts FROM audit_anchor WHERE log_id = ?", (log_id,)
        )
        if not rows:
            return None
        count, digest, end, ts = rows[0]
        return Anchor(int(count), str(digest), int(end), float(ts))

    def advance_audit_anchor(self, log_id: str, anchor: Anchor) -> None:
        """See :meth:`~kairo_guard.core.anchor.AnchorStore.advance_audit_anchor`."""
        self.db.count(_ADVANCE, (log_id, anchor.count, anchor.hash, anchor.end, anchor.ts))
