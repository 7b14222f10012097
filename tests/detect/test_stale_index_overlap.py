"""A stale fingerprint index (built under another scheme) answers no overlap question:
the consumers that ask it directly (the guard's ``fingerprints``: OTel scrubbing, the
telemetry message scrubber) would otherwise read its blind "no tenant's text" as clean."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from kg_testing import make_guard

from kairo_guard import ContentRefused, KeyRing
from kairo_guard.detect.fingerprint import SCHEME_RULE
from kairo_guard.store.sqlite import DB_FILE_NAME

DOC = (
    "Acme's plan for the spring: a second warehouse near the river, twelve new engineers "
    "for the logistics platform, and a supplier contract that stays confidential until "
    "the board signs it in May."
)


@pytest.mark.sqlite_only  # opens the state directory's SQLite file itself
def test_when_the_index_is_stale_then_an_overlap_question_is_refused_not_answered_none(
    tmp_path: Path, ring: KeyRing
) -> None:
    home = tmp_path / "state"
    with make_guard(home, ring=ring, pii_gate=False) as guard:
        guard.index_content("acme", {"text": DOC})
        assert guard.fingerprints.overlap(DOC) is not None
    with sqlite3.connect(home / DB_FILE_NAME) as db:
        db.execute("DELETE FROM meta WHERE key = 'fingerprint_scheme'")
    with make_guard(home, ring=ring, pii_gate=False) as guard:
        with pytest.raises(ContentRefused) as refused:
            guard.fingerprints.overlap("text the old index cannot recognize, whoever wrote it")
        assert refused.value.rule == SCHEME_RULE
