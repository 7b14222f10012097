"""The sink decorator checks the records a function receives, its defaults included."""

from __future__ import annotations

from pathlib import Path

import pytest
from kg_testing import make_guard

from kairo_guard import Guard, IsolationViolation


@pytest.fixture
def net(tmp_path: Path) -> Guard:
    return make_guard(tmp_path / "net", pii_gate=False)


def test_when_a_guarded_function_uses_its_default_argument_then_the_default_is_checked(
    net: Guard,
) -> None:
    @net.sink("router", kind="shared-training")
    def train(records: list[object] = [{"text": "unsealed"}]) -> int:  # noqa: B006
        return len(records)

    with pytest.raises(IsolationViolation):
        train()
