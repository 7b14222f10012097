"""An agreement granted for a duration is the same terms when granted again later."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kg_testing import make_guard
from tenant_data_support import DAY, T0, Clock

from kairo_guard import Guard, KeyRing


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(tmp_path: Path, ring: KeyRing, clock: Clock) -> Iterator[Guard]:
    with make_guard(tmp_path / "state", ring=ring, pii_gate=False, clock=clock) as guard:
        yield guard


def _grant_events(guard: Guard) -> list[dict[str, object]]:
    guard.audit.flush()
    lines = guard.audit.path.read_bytes().splitlines()
    return [e for e in map(orjson.loads, lines) if e.get("event") == "agreement.grant"]


def test_when_a_duration_grant_is_repeated_later_then_the_first_agreement_is_returned(
    timed: Guard, clock: Clock
) -> None:
    agreements = timed.tenancy.agreements
    first, created = agreements.grant_once("acme", reference="DPA-1", valid_for=365 * DAY)
    assert created
    assert first.expires_at == T0 + 365 * DAY
    clock.advance(3 * DAY)
    again, created = agreements.grant_once("acme", reference="DPA-1", valid_for=365 * DAY)
    assert (again, created) == (first, False)
    assert timed.grant_agreement("acme", reference="DPA-1", valid_for=365 * DAY) == first
    assert [e["agreement"] for e in _grant_events(timed)] == [first.id]
    assert _grant_events(timed)[0]["expires_at"] == T0 + 365 * DAY


def test_when_a_duration_grant_names_another_duration_then_it_is_refused(
    timed: Guard, clock: Clock
) -> None:
    timed.grant_agreement("acme", reference="DPA-1", valid_for=365 * DAY)
    clock.advance(60)
    with pytest.raises(ValueError, match="already active"):
        timed.grant_agreement("acme", reference="DPA-1", valid_for=30 * DAY)


@pytest.mark.parametrize("valid_for", [0, -1.0, float("inf"), float("nan"), "365d", True])
def test_when_valid_for_is_not_a_positive_duration_then_a_value_error_names_it(
    timed: Guard, valid_for: object
) -> None:
    with pytest.raises(ValueError, match="valid_for"):
        timed.grant_agreement("acme", valid_for=valid_for)  # type: ignore[arg-type]
    assert timed.agreements() == []


def test_when_both_expires_at_and_valid_for_are_given_then_it_is_refused(timed: Guard) -> None:
    with pytest.raises(ValueError, match="not both"):
        timed.grant_agreement("acme", expires_at=T0 + DAY, valid_for=DAY)
    assert timed.agreements() == []


@pytest.mark.parametrize("terms", [{"expires_at": 1e15}, {"valid_for": 4_000_000 * DAY}])
def test_when_the_expiry_is_past_any_calendar_date_then_nothing_is_granted(
    timed: Guard, terms: dict[str, float]
) -> None:
    # such an agreement could not be shown as a date: `agreements list` failed on it
    with pytest.raises(ValueError, match="year 9999"):
        timed.grant_agreement("acme", **terms)  # type: ignore[arg-type]
    assert timed.agreements() == []
