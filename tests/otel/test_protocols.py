"""The OTel layer needs only what its Protocols name, not a Guard: the exporters and
the tenant tokens work with any object that has those members."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace

import pytest

from kairo_guard import Guard, TokenRejected
from kairo_guard.core.keys import KeyRing
from kairo_guard.otel.baggage import TenantTokenCodec, token_codec
from kairo_guard.otel.protocols import ContentJudges, TokenAuthority
from kairo_guard.otel.scrubbing import ContentScrubber

TENANT_TEXT = (
    "Quarterly revenue projections for the Northwind account show a steep decline in "
    "renewals across the eastern region, driven by pricing pressure and churn."
)
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C


class _Erasures:
    def __init__(self, erased: Mapping[str, float]) -> None:
        self.erased = dict(erased)

    def erased_tenants(self) -> Mapping[str, float]:
        return self.erased


def test_a_guard_is_what_the_protocols_describe(guard: Guard) -> None:
    judges: ContentJudges = guard
    authority: TokenAuthority = guard
    assert judges.fingerprints is guard.fingerprints
    assert authority.keys is guard.keys


def test_when_given_only_an_index_and_telemetry_then_the_scrubber_judges_content(
    guard: Guard,
) -> None:
    guard.index_content("acme", TENANT_TEXT)
    judges = SimpleNamespace(fingerprints=guard.fingerprints, pii=None, telemetry=guard.telemetry)
    scrubber = ContentScrubber(judges)
    assert scrubber.judge(TENANT_TEXT) == "fingerprint"
    assert scrubber.judge("GET /v1/health 200") is None


def test_when_given_only_keys_settings_clock_and_erasures_then_tokens_open_until_erased() -> None:
    ring = KeyRing.generate()
    now = [1_000_000.0]
    erasures = _Erasures({})
    authority = SimpleNamespace(
        keys=ring,
        store=erasures,
        settings=SimpleNamespace(propagation=SimpleNamespace(token_ttl=60)),
        clock=lambda: now[0],
    )
    codec = token_codec(authority)
    assert isinstance(codec, TenantTokenCodec)
    token = codec.issue("acme", TRACE_ID)
    assert codec.open(token, TRACE_ID) == "acme"
    erasures.erased[ring.pseudonym("acme")] = now[0]
    now[0] += 1
    with pytest.raises(TokenRejected) as info:
        codec.open(token, TRACE_ID)
    assert info.value.reason == "tenant-erased"
