"""Fine-tune agreements: idempotent grants by reference (a grant for a duration too), and
what ``expires_at`` accepts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from kg_testing import make_guard
from tenant_data_support import DAY, T0, Clock

from kairo_guard import Guard, KeyRing
from kairo_guard.cli.main import main
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore
from kairo_guard.tenancy.agreements import Agreements


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(tmp_path: Path, ring: KeyRing, clock: Clock) -> Iterator[Guard]:
    """A guard whose clock the test moves."""
    with make_guard(tmp_path / "state", ring=ring, pii_gate=False, clock=clock) as guard:
        yield guard


def _grants(guard: Guard) -> list[dict[str, object]]:
    guard.audit.flush()
    lines = guard.audit.path.read_bytes().splitlines()
    return [e for e in map(orjson.loads, lines) if e.get("event") == "agreement.grant"]


def test_when_the_same_reference_is_granted_twice_then_the_first_agreement_is_returned(
    timed: Guard, clock: Clock
) -> None:
    first = timed.grant_agreement("acme", reference="DPA-2026-001", expires_at=T0 + 30 * DAY)
    clock.advance(60)
    again = timed.grant_agreement("acme", reference="DPA-2026-001", expires_at=T0 + 30 * DAY)
    assert again == first
    assert timed.agreements("acme") == [first]
    assert len(_grants(timed)) == 1  # nothing new happened, nothing new is audited


def test_when_scope_words_come_in_another_order_then_it_is_the_same_agreement(
    timed: Guard,
) -> None:
    first = timed.grant_agreement("acme", reference="DPA-7", scope="fine-tune,eval")
    assert timed.grant_agreement("acme", reference="DPA-7", scope="eval,fine-tune") == first


def test_when_the_reference_is_empty_then_every_grant_is_a_new_agreement(timed: Guard) -> None:
    one, two = timed.grant_agreement("acme"), timed.grant_agreement("acme")
    assert one.id != two.id
    assert len(timed.agreements("acme")) == 2


@pytest.mark.parametrize(
    ("scope", "expires_at"),
    [
        ("fine-tune,eval", T0 + 30 * DAY),  # wider scope
        ("eval", T0 + 30 * DAY),  # another scope
        ("fine-tune", T0 + 60 * DAY),  # longer
        ("fine-tune", None),  # no expiry at all
    ],
)
def test_when_an_active_reference_is_granted_with_other_terms_then_it_is_refused(
    timed: Guard, scope: str, expires_at: float | None
) -> None:
    first = timed.grant_agreement("acme", reference="DPA-1", expires_at=T0 + 30 * DAY)
    with pytest.raises(ValueError, match=r"DPA-1.*already active.*revoke it first"):
        timed.grant_agreement("acme", reference="DPA-1", scope=scope, expires_at=expires_at)
    assert timed.agreements("acme") == [first]


def test_when_the_reference_was_revoked_then_granting_it_again_makes_a_new_agreement(
    timed: Guard, clock: Clock
) -> None:
    first = timed.grant_agreement("acme", reference="DPA-1")
    timed.revoke_agreement("acme", first.id)
    clock.advance(1)
    second = timed.grant_agreement("acme", reference="DPA-1", scope="fine-tune,eval")
    assert second.id != first.id
    assert timed.tenancy.agreements.active("acme")


def test_when_the_reference_expired_then_granting_it_again_makes_a_new_agreement(
    timed: Guard, clock: Clock
) -> None:
    first = timed.grant_agreement("acme", reference="DPA-1", expires_at=T0 + DAY)
    clock.advance(2 * DAY)
    assert not timed.tenancy.agreements.active("acme")
    second = timed.grant_agreement("acme", reference="DPA-1", expires_at=T0 + 30 * DAY)
    assert second.id != first.id
    assert timed.tenancy.agreements.active("acme")


def test_when_two_tenants_hold_the_same_reference_then_each_has_its_own_agreement(
    timed: Guard,
) -> None:
    acme = timed.grant_agreement("acme", reference="standard-dpa-v3")
    initech = timed.grant_agreement("initech", reference="standard-dpa-v3")
    assert acme.id != initech.id
    assert (acme.tenant, initech.tenant) == ("acme", "initech")


def test_when_two_stores_grant_the_same_reference_then_the_database_keeps_one(
    tmp_path: Path,
) -> None:
    # Two processes' stores on one database: the lookup and the insert are one transaction.
    one, two = SQLiteStore(tmp_path / DB_FILE_NAME), SQLiteStore(tmp_path / DB_FILE_NAME)
    try:
        first, created = one.grant_agreement("acme", now=T0, expires_at=None, reference="R")
        again, created_again = two.grant_agreement(
            "acme", now=T0 + 1, expires_at=None, reference="R"
        )
        assert (created, created_again, again) == (True, False, first)
        assert one.list_agreements("acme") == [first]
    finally:
        one.close()
        two.close()


_AWARE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expires_at", "seconds"),
    [
        (_AWARE, _AWARE.timestamp()),
        (_AWARE.astimezone(timezone(timedelta(hours=2))), _AWARE.timestamp()),  # same moment
        (int(_AWARE.timestamp()), _AWARE.timestamp()),
        (_AWARE.timestamp() + 0.5, _AWARE.timestamp() + 0.5),
        (None, None),
    ],
    ids=["utc", "offset", "int", "float", "none"],
)
def test_when_expires_at_is_an_aware_datetime_or_unix_seconds_then_it_is_stored_as_seconds(
    guard: Guard, expires_at: object, seconds: float | None
) -> None:
    agreement = guard.grant_agreement("acme", expires_at=expires_at)  # type: ignore[arg-type]
    assert agreement.expires_at == seconds
    assert guard.agreements("acme")[0].expires_at == seconds
    assert guard.tenancy.agreements.active("acme")


@pytest.mark.parametrize(
    ("expires_at", "message"),
    [
        (datetime(2030, 1, 1, 12, 0), "naive datetime"),
        ("2030-01-01T00:00:00+00:00", "not str"),
        (True, "not bool"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ([2030], "not list"),
    ],
    ids=["naive", "string", "bool", "nan", "inf", "list"],
)
def test_when_expires_at_is_anything_else_then_a_value_error_names_it(
    guard: Guard, expires_at: object, message: str
) -> None:
    with pytest.raises(ValueError, match=f"expires_at.*{message}"):
        guard.grant_agreement("acme", expires_at=expires_at)  # type: ignore[arg-type]
    assert guard.agreements("acme") == []


@pytest.mark.parametrize("offset", [0, -1, -DAY])
def test_when_expires_at_is_not_after_now_then_the_grant_is_refused(
    timed: Guard, offset: float
) -> None:
    with pytest.raises(ValueError, match=r"expires_at .* is not after now"):
        timed.grant_agreement("acme", expires_at=T0 + offset)
    with pytest.raises(ValueError, match="not after now"):
        timed.grant_agreement("acme", expires_at=datetime.fromtimestamp(T0 + offset, UTC))
    assert timed.agreements("acme") == []


def test_when_the_store_cannot_be_read_then_no_agreement_is_active(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / DB_FILE_NAME)
    agreements = Agreements(store, _NoAudit(), lambda t: f"p-{t}", lambda: T0)
    agreements.grant("acme")
    assert agreements.active("acme")
    store.db.query("DROP TABLE agreements")  # a real failure of the store
    assert not agreements.active("acme")
    assert agreements.for_fine_tune("acme") is None
    store.close()


class _NoAudit:
    def append(self, entry: object) -> None:
        """Keep nothing."""


def test_when_the_cli_grants_the_same_reference_twice_then_one_agreement_is_listed(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["agreements", "grant", "acme", "--reference", "DPA-9"]) == 0
    assert main(["agreements", "grant", "acme", "--reference", "DPA-9"]) == 0
    capsys.readouterr()
    assert main(["agreements", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["reference"] for row in rows] == ["DPA-9"]


# -- a grant for a duration, repeated later ---------------------------------------


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
    assert [e["agreement"] for e in _grants(timed)] == [first.id]
    assert _grants(timed)[0]["expires_at"] == T0 + 365 * DAY


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
