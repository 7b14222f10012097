"""A key the PII gate finds to be a person's name never appears in a refusal's reason,
whatever its case: the gate's own finding says it is personal data."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from kairo_guard.detect.pii.check import LazyPiiCheck
from kairo_guard.detect.pii.gate import PiiFinding

pytestmark = pytest.mark.storeless  # opens no state store: runs once, in the main pass

NAMES = ("garcia", "jsmith", "john")


class NameGate:
    """Tags the planted lowercase names as PERSON, as the small English model does."""

    def scan(self, texts: Sequence[str]) -> list[PiiFinding | None]:
        return [PiiFinding(("PERSON",)) if t in NAMES else None for t in texts]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"garcia": {"x": "y"}}, "text holds PII: PERSON at $.* (a key)"),
        ({"users": {"jsmith": "x"}}, "text holds PII: PERSON at $.users.* (a key)"),
        ({"john": "ok"}, "text holds PII: PERSON at $.* (a key)"),
    ],
)
def test_when_a_lowercase_key_is_found_to_be_a_name_then_the_reason_withholds_it(
    record: dict[str, object], expected: str
) -> None:
    check = LazyPiiCheck(NameGate)
    decision = check(record)
    assert decision is not None
    assert decision.reason == expected
    assert not any(name in decision.reason for name in NAMES)
