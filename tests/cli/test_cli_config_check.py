"""``kairo-guard config check``: every problem of a config file explained; exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import load

# -- config check --------------------------------------------------------------------

VALID_CONFIG = """
[guard]
default_mode = "enforce"

[sinks.router]
kind = "shared-training"
mode = "filter"

[sinks.acme-ft]
kind = "tenant-fine-tune:acme"

[[rules]]
id = "deny-scraped"
effect = "deny"
reason = "scraped data is not licensed"
sources = ["scrape*"]

[retention]
customer_content = "90d"
"""

UNKNOWN_KEY = 'colour = "blue"\n'
UNKNOWN_SINK_KIND = '[sinks.router]\nkind = "shared-everything"\n'
UNSAFE_RULE = """
[[rules]]
id = "leak"
effect = "allow"
reason = "please"
data_classes = ["customer_content"]
sink_kinds = ["shared-training"]
"""
BAD_RETENTION = '[retention]\ncustomer_content = "ninety days"\n'
INVALID_TOML = '[guard\ndefault_mode = "enforce"\n'


def test_when_config_is_valid_then_check_passes_and_scan_uses_its_sinks(
    kg: Any, acme_sealed: Path, tmp_path: Path
) -> None:
    (tmp_path / "kairo-guard.toml").write_text(VALID_CONFIG)

    checked = kg("config", "check")
    scan = kg("scan", acme_sealed, "--sink", "router", "--report", "report.json")

    assert checked.code == 0
    assert "ok" in checked.out
    assert scan.code == 1
    report = load(tmp_path / "report.json")
    assert (report["sink"], report["kind"], report["mode"]) == (
        "router",
        "shared-training",
        "filter",
    )


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (UNKNOWN_KEY, ["colour"]),
        (UNKNOWN_SINK_KIND, ["sinks.router", "shared-everything"]),
        (UNSAFE_RULE, ["leak", "shared sink"]),
        (BAD_RETENTION, ["retention", "ninety days"]),
        (INVALID_TOML, ["not valid TOML", "line 1"]),
    ],
    ids=["unknown-key", "unknown-sink-kind", "unsafe-rule", "bad-retention", "invalid-toml"],
)
def test_when_config_has_an_error_then_check_explains_it_and_exits_2(
    text: str, fragments: list[str], kg: Any, tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text(text)

    result = kg("config", "check", "bad.toml")

    assert result.code == 2
    assert "1 problem" in result.err
    for fragment in fragments:
        assert fragment in result.err


def test_when_config_has_several_schema_errors_then_check_explains_each(
    kg: Any, tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text(
        UNKNOWN_KEY + BAD_RETENTION + "[limits]\nmax_record_bytes = 1\n"
    )

    result = kg("config", "check", "bad.toml")

    assert result.code == 2
    assert "3 problem" in result.err
    for fragment in ["colour", "ninety days", "max_record_bytes"]:
        assert fragment in result.err


def test_when_config_has_several_policy_errors_then_check_explains_each(
    kg: Any, tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text(UNKNOWN_SINK_KIND + UNSAFE_RULE)

    result = kg("config", "check", "bad.toml")

    assert result.code == 2
    assert "2 problem" in result.err
    for fragment in ["shared-everything", "leak"]:
        assert fragment in result.err


def test_when_config_has_every_kind_of_error_then_check_explains_all_of_them(
    kg: Any, tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text(
        UNKNOWN_KEY + BAD_RETENTION + UNKNOWN_SINK_KIND + UNSAFE_RULE
    )

    result = kg("config", "check", "bad.toml")

    assert result.code == 2
    for fragment in ["colour", "ninety days", "shared-everything", "leak"]:
        assert fragment in result.err


def test_when_config_file_is_missing_then_check_exits_2(kg: Any) -> None:
    result = kg("config", "check", "nowhere.toml")

    assert result.code == 2
    assert "no config file" in result.err


def test_when_config_is_invalid_then_other_commands_exit_2(
    kg: Any, acme_sealed: Path, tmp_path: Path
) -> None:
    (tmp_path / "kairo-guard.toml").write_text(UNKNOWN_SINK_KIND)

    result = kg("scan", acme_sealed, "--sink", "shared-training")

    assert result.code == 2
    assert "shared-everything" in result.err
