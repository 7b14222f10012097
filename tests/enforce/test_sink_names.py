"""Every entry point names its sink the same way: a config name, a kind, or kind=."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kg_testing import make_guard

from kairo_guard import ConfigError, Guard, IsolationViolation, SinkKind

TENANT_RECORD = {"text": "not sealed: unknown provenance"}


@pytest.mark.parametrize(
    ("sink", "kind", "expected_name", "expected_label"),
    [
        ("shared-training", None, "shared-training", "shared-training"),
        ("shared-eval", None, "shared-eval", "shared-eval"),
        ("tenant-fine-tune:acme", None, "tenant-fine-tune:acme", "tenant-fine-tune:acme"),
        ("router-train", "shared-training", "router-train", "shared-training"),
        ("ft", "tenant-fine-tune:acme", "ft", "tenant-fine-tune:acme"),
    ],
)
def test_when_a_sink_is_a_kind_or_has_kind_then_every_entry_point_resolves_it(
    guard: Guard, sink: str, kind: str | None, expected_name: str, expected_label: str
) -> None:
    resolved = guard.resolve_sink(sink, kind=kind)
    assert (resolved.name, resolved.label) == (expected_name, expected_label)
    assert guard.check([TENANT_RECORD], sink=sink, kind=kind).sink == expected_name
    assert guard.checks.start(sink, kind=kind).sink.label == expected_label
    with pytest.raises(IsolationViolation):
        list(guard.checked([TENANT_RECORD], sink=sink, kind=kind))

    @guard.sink(sink, kind=kind)
    def train(records: list[dict[str, str]]) -> int:
        return len(records)

    with pytest.raises(IsolationViolation):
        train([TENANT_RECORD])


def test_when_achecked_names_a_kind_then_it_checks_like_checked(guard: Guard) -> None:
    async def records() -> AsyncIterator[dict[str, str]]:
        yield TENANT_RECORD

    async def drain() -> list[dict[str, str]]:
        return [r async for r in guard.achecked(records(), sink="shared-eval", mode="filter")]

    assert asyncio.run(drain()) == []


_UNKNOWN_NAME_CALLS: dict[str, Callable[[Guard], Any]] = {
    "check": lambda g: g.check([TENANT_RECORD], sink="router-train"),
    "checked": lambda g: g.checked([TENANT_RECORD], sink="router-train"),
    "sink": lambda g: g.sink("router-train"),
    "checks.start": lambda g: g.checks.start("router-train"),
    "resolve_sink": lambda g: g.resolve_sink("router-train"),
}


@pytest.mark.parametrize("call", sorted(_UNKNOWN_NAME_CALLS))
def test_when_a_name_is_unknown_and_no_kind_then_the_error_says_how_to_name_it(
    guard: Guard, call: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _UNKNOWN_NAME_CALLS[call](guard)
    message = str(err.value)
    assert "router-train" in message
    assert "kind=" in message
    assert "[sinks.router-train]" in message


def test_when_a_configured_sink_is_named_with_another_kind_then_it_is_refused(
    tmp_path: Path,
) -> None:
    config = tmp_path / "kairo-guard.toml"
    config.write_text('[sinks.router]\nkind = "shared-training"\n')
    with make_guard(tmp_path / "state", config_file=config, pii_gate=False) as guard:
        assert guard.resolve_sink("router").kind is SinkKind.SHARED_TRAINING
        assert guard.check([TENANT_RECORD], sink="router").blocked == 1
        with pytest.raises(ConfigError, match="configured as shared-training"):
            guard.check([TENANT_RECORD], sink="router", kind="shared-eval")


def test_when_a_kind_embeds_one_tenant_and_tenant_names_another_then_it_is_refused(
    guard: Guard,
) -> None:
    with pytest.raises(ConfigError, match="names tenant"):
        guard.resolve_sink("tenant-fine-tune:acme", tenant="globex")


def test_when_a_sink_object_is_given_a_contradicting_kind_then_it_is_refused(
    guard: Guard,
) -> None:
    sink = guard.resolve_sink("router", kind="shared-training")
    assert guard.resolve_sink(sink, kind="shared-training") is sink
    with pytest.raises(ConfigError):
        guard.resolve_sink(sink, kind="shared-eval")
