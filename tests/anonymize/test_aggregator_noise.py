"""The noise on published counts: calibrated, and what it does to a sybil attack."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kg_testing import EVERY_TENANT

from kairo_guard import Guard
from kairo_guard.anonymize.aggregator import TelemetryAggregator, discrete_laplace

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def _event(tenant: str, i: int, *, error: bool = False) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "route": "/v1/chat",
        "model": "small",
        "latency_ms": 100.0 + i,
        "status": 500 if error else 200,
        "ts": (T0 + timedelta(seconds=i)).isoformat(),
    }


def _aggregator(guard: Guard, **options: Any) -> TelemetryAggregator:
    return TelemetryAggregator(
        guard.telemetry_vetting, audit=guard.audit, pseudonym=guard.keys.pseudonym,
        tenants=EVERY_TENANT, k=10, **options,
    )  # fmt: skip


@pytest.mark.parametrize("scale", [0.5, 2.0, 8.0])
def test_the_noise_is_the_discrete_laplace_distribution_of_its_scale(scale: float) -> None:
    rng = random.Random(20261206)
    draws = [discrete_laplace(rng, scale) for _ in range(40_000)]
    q = math.exp(-1 / scale)
    variance = 2 * q / (1 - q) ** 2  # of P(x) = (1 - q) / (1 + q) * q^|x|
    assert abs(statistics.fmean(draws)) < 4 * math.sqrt(variance / len(draws))
    assert statistics.pvariance(draws) == pytest.approx(variance, rel=0.05)
    seen = Counter(draws)
    for x in (0, 1, -1, 2):
        expected = (1 - q) / (1 + q) * q ** abs(x)
        assert seen[x] / len(draws) == pytest.approx(expected, abs=0.01)


def test_k_minus_1_sybils_no_longer_read_a_tenants_exact_counts(guard: Guard) -> None:
    """Nine accounts of one party send known events beside one real tenant's ten
    requests, three of them errors; the party subtracts its own from what is published."""
    sybils = [f"sybil{i}" for i in range(9)]
    events = [_event(s, j) for s in sybils for j in range(10)]  # known: 90 events, 0 errors
    events += [_event("victim", 100 + j, error=j < 3) for j in range(10)]
    exact = _aggregator(guard, epsilon=None).aggregate(events)
    assert exact[0]["count"] - 90 == 10  # without noise: the victim's exact count...
    assert round(exact[0]["error_rate"] * exact[0]["count"]) == 3  # ...and exact errors
    aggregator = _aggregator(guard, rng=random.Random(7))
    counts, errors = [], []
    for _ in range(300):
        (row,) = aggregator.aggregate(events)
        counts.append(row["count"] - 90)
        errors.append(round(row["error_rate"] * row["count"]))
    # each guess is right only as often as the noise happens to be 0 (tanh(1/4) ~ 0.24)
    assert sum(c == 10 for c in counts) / len(counts) < 0.35
    assert sum(e == 3 for e in errors) / len(errors) < 0.35
    assert len(set(errors)) >= 5  # zero errors and several are both published often
    assert statistics.fmean(counts) == pytest.approx(10, abs=1.0)  # unbiased on average


def test_published_counts_stay_counts(guard: Guard) -> None:
    events = [_event(f"t{i}", i, error=i % 2 == 0) for i in range(10)]
    aggregator = _aggregator(guard, epsilon=0.01, rng=random.Random(3))  # very noisy
    for _ in range(50):
        (row,) = aggregator.aggregate(events)
        assert isinstance(row["count"], int)
        assert row["count"] >= 0
        assert 0.0 <= row["error_rate"] <= 1.0
        assert row["epsilon"] == 0.01


@pytest.mark.parametrize("epsilon", [0.0, -1.0, math.inf, math.nan])
def test_an_epsilon_that_is_no_budget_is_refused(guard: Guard, epsilon: float) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        _aggregator(guard, epsilon=epsilon)
