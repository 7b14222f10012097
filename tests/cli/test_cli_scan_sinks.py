"""``kairo-guard scan --sink NAME [--kind KIND] [--tenant T]``: a sink is named as in code.

A configured name, a kind string, or any name with ``--kind``: the same three ways the
library's ``sink=`` arguments accept, resolved by ``guard.resolve_sink``. A name that is
none of these is bad usage (exit 2), never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CONFIG = """
[sinks.router]
kind = "shared-training"

[sinks.acme-ft]
kind = "tenant-fine-tune:acme"
"""


@pytest.fixture
def acme_sealed(kg: Callable[..., Any], tmp_path: Path) -> Path:
    """Two of acme's documents, labelled as its customer content, and its agreement."""
    (tmp_path / "docs.jsonl").write_text(
        '{"text": "Acme supply agreement: 40,000 units."}\n{"text": "Acme Q3 plan."}\n'
    )
    (tmp_path / "kairo-guard.toml").write_text(CONFIG)
    labelled = kg(
        "label", "docs.jsonl", "--tenant", "acme", "--class", "customer_content", "--out", "a.jsonl"
    )
    assert labelled.code == 0
    assert kg("agreements", "grant", "acme").code == 0
    return tmp_path / "a.jsonl"


def _report(tmp_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((tmp_path / "r.json").read_text())
    return doc


@pytest.mark.parametrize(
    ("sink_args", "name", "code", "rule"),
    [
        (["--sink", "tenant-fine-tune:acme"], "tenant-fine-tune:acme", 0, "allow"),
        (["--sink", "tenant-fine-tune", "--tenant", "acme"], "tenant-fine-tune", 0, "allow"),
        (["--sink", "acme-ft"], "acme-ft", 0, "allow"),
        (["--sink", "ft", "--kind", "tenant-fine-tune:acme"], "ft", 0, "allow"),
        (["--sink", "ft", "--kind", "tenant-fine-tune", "--tenant", "acme"], "ft", 0, "allow"),
        (["--sink", "shared-training"], "shared-training", 1, "class.customer"),
        (["--sink", "router"], "router", 1, "class.customer"),
        (["--sink", "router-train", "--kind", "shared-training"], "router-train", 1, "class."),
        (["--sink", "router", "--kind", "shared-training"], "router", 1, "class.customer"),
    ],
)
def test_when_a_sink_is_named_by_config_kind_or_kind_option_then_scan_checks_that_sink(
    sink_args: list[str],
    name: str,
    code: int,
    rule: str,
    kg: Callable[..., Any],
    acme_sealed: Path,
    tmp_path: Path,
) -> None:
    result = kg("scan", acme_sealed, *sink_args, "--report", "r.json")

    assert result.code == code, result.err
    report = _report(tmp_path)
    assert report["sink"] == name
    assert list(report["by_rule"]) == [r for r in report["by_rule"] if r.startswith(rule)]
    assert report["total"] == 2


@pytest.mark.parametrize(
    ("sink_args", "message"),
    [
        (["--sink", "router-train"], "--kind"),
        (["--sink", "router-train"], "unknown sink 'router-train'"),
        (["--sink", "ft", "--kind", "shared-everything"], "unknown sink kind"),
        (["--sink", "ft", "--kind", "tenant-fine-tune"], "needs a valid tenant"),
        (["--sink", "router", "--kind", "shared-eval"], "configured as shared-training"),
        (["--sink", "router", "--tenant", "acme"], "--tenant applies only"),
        (["--sink", "tenant-fine-tune:acme", "--tenant", "globex"], "not 'globex'"),
        (["--sink", "ft", "--tenant", "acme"], "unknown sink 'ft'"),
    ],
)
def test_when_a_sink_cannot_be_resolved_then_scan_exits_2_and_says_why(
    sink_args: list[str],
    message: str,
    kg: Callable[..., Any],
    acme_sealed: Path,
    tmp_path: Path,
) -> None:
    result = kg("scan", acme_sealed, *sink_args, "--report", "r.json")

    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "r.json").exists()


def test_when_scan_help_is_asked_then_kind_and_tenant_are_documented(
    kg: Callable[..., Any],
) -> None:
    result = kg("scan", "--help")

    assert result.code == 0
    for fragment in ("--kind KIND", "--tenant TENANT", "tenant-fine-tune:TENANT"):
        assert fragment in result.out
