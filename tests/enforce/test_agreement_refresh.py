"""A long-running check re-reads agreements: a revocation reaches a stream in progress."""

from __future__ import annotations

from pathlib import Path

import pytest
from kg_testing import make_guard

from kairo_guard import Guard, IsolationViolation


@pytest.fixture
def net(tmp_path: Path) -> Guard:
    return make_guard(tmp_path / "net", pii_gate=False)


def test_when_an_agreement_is_revoked_mid_stream_then_the_next_record_is_blocked(
    net: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kairo_guard.enforce.check.REFRESH_SECONDS", 0.0)
    net.grant_agreement("acme")
    records = [net.label_record({"i": i}, tenant="acme") for i in range(3)]
    stream = net.checked(iter(records), sink=net.resolve_sink("ft", kind="tenant-fine-tune:acme"))
    assert next(stream) == records[0]
    net.revoke_agreement("acme")
    with pytest.raises(IsolationViolation):
        next(stream)
