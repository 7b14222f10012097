"""Configuration precedence and config-file validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from kairo_guard import ConfigError, Guard, KeyRing, Mode, SinkKind
from kairo_guard.config import check_config_file, load_settings, parse_duration

GOOD = """
[guard]
default_mode = "filter"

[sinks.router-train]
kind = "shared-training"

[sinks.acme-ft]
kind = "tenant-fine-tune:acme"
mode = "enforce"

[[rules]]
id = "user.no-scraped"
effect = "deny"
reason = "scraped web text is not licensed"
data_classes = ["operator_public"]
sources = ["scrape-*"]

[retention]
customer_content = "90d"

[limits]
max_record_bytes = 1048576
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kairo-guard.toml"
    path.write_text(text)
    return path


def test_good_file_loads_sinks_rules_retention_limits(tmp_path: Path) -> None:
    settings = load_settings(config_file=_write(tmp_path, GOOD), env={})
    assert settings.default_mode is Mode.FILTER
    assert settings.sinks["router-train"].mode is Mode.FILTER
    assert settings.sinks["acme-ft"].kind is SinkKind.TENANT_FINE_TUNE
    assert settings.sinks["acme-ft"].tenant == "acme"
    assert settings.sinks["acme-ft"].mode is Mode.ENFORCE
    assert [r.id for r in settings.rules] == ["user.no-scraped"]
    assert settings.retention == {"customer_content": 90 * 86400}
    assert settings.limits.max_record_bytes == 1 << 20
    assert check_config_file(tmp_path / "kairo-guard.toml") == []


def test_precedence_argument_over_environment_over_file(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    env = {"KAIRO_GUARD_MODE": "observe", "KAIRO_GUARD_HOME": str(tmp_path / "env-home")}
    from_env = load_settings(config_file=path, env=env)
    assert from_env.default_mode is Mode.OBSERVE
    assert from_env.home == tmp_path / "env-home"
    explicit = load_settings(config_file=path, env=env, default_mode="enforce", home=tmp_path / "x")
    assert explicit.default_mode is Mode.ENFORCE
    assert explicit.home == tmp_path / "x"


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    settings = load_settings(env={"KAIRO_GUARD_CONFIG": str(path)})
    assert settings.config_file == path


def test_retention_is_applied_to_seals(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    with Guard(home=tmp_path / "s", key=KeyRing.generate(), config_file=path, env={}) as guard:
        label = guard.open_seal(guard.seal({"a": 1}, tenant="acme"))
    assert label.expires_at is not None
    assert label.expires_at - label.created_at == 90 * 86400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour = 1\n", "colour: Extra inputs are not permitted"),
        ('[sinks.x]\nkind = "shared-everything"\n', "sinks.x: unknown sink kind"),
        ('[sinks.x]\nkind = "tenant-fine-tune"\n', "a tenant-fine-tune sink needs a valid tenant"),
        ('[sinks.x]\nkind = "shared-eval"\nmode = "loud"\n', "sinks.x.mode"),
        (
            '[[rules]]\nid = "user.leak"\neffect = "allow"\nreason = "r"\n'
            'data_classes = ["customer_content"]\nsink_kinds = ["shared-training"]\n',
            "invariant I1",
        ),
        ('[retention]\ncustomer_content = "ninety days"\n', "not a duration"),
        ("[guard\n", "not valid TOML"),
        ("[limits]\nmax_record_bytes = 10\n", "limits.max_record_bytes"),
        ("[pii]\nprocesses = 0\n", "pii.processes"),
    ],
)
def test_each_config_error_is_explained(tmp_path: Path, text: str, expected: str) -> None:
    problems = check_config_file(_write(tmp_path, text))
    assert any(expected in p for p in problems), problems
    with pytest.raises(ConfigError):
        load_settings(config_file=tmp_path / "kairo-guard.toml", env={})


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    text = (
        '[sinks.a]\nkind = "nope"\n[sinks.b]\nkind = "shared-eval"\ntenant = "acme"\n'
        '[[rules]]\nid = "user.leak"\neffect = "allow"\nreason = "r"\n'
    )
    problems = check_config_file(_write(tmp_path, text))
    assert len(problems) == 3, problems


@pytest.mark.parametrize(("text", "seconds"), [("90d", 7776000), ("12h", 43200), ("45s", 45)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0d", "1w", "-3d", "", "d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_when_the_reference_config_example_is_checked_then_it_has_no_problem(
    tmp_path: Path,
) -> None:
    import re

    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    (example,) = re.findall(r"```toml\n(.*?)```", page, re.S)
    assert check_config_file(_write(tmp_path, example)) == []
