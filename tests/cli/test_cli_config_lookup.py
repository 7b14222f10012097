"""The CLI finds ``kairo-guard.toml`` as the library does: --config, KAIRO_GUARD_CONFIG,
./kairo-guard.toml, then the state directory (--home / KAIRO_GUARD_HOME)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kairo_guard.store.keyfile import KEY_FILE_NAME

Kg = Callable[..., Any]


def _router(mode: str) -> str:
    return f'[sinks.router]\nkind = "shared-eval"\nmode = "{mode}"\n'


def _scan_mode(kg: Kg, tmp_path: Path) -> str:
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n')
    result = kg("scan", "in.jsonl", "--sink", "router", "--report", "r.json")
    assert result.code == 1, result.err
    mode: str = json.loads((tmp_path / "r.json").read_text())["mode"]
    return mode


def test_when_only_the_state_directory_holds_a_config_then_commands_use_it(
    kg: Kg, home: Path, tmp_path: Path
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "kairo-guard.toml").write_text(_router("observe"))

    checked = kg("config", "check")

    assert checked.code == 0
    assert f"{home / 'kairo-guard.toml'}: ok" in checked.out
    assert _scan_mode(kg, tmp_path) == "observe"


def test_when_the_current_directory_and_the_state_directory_hold_one_then_the_current_wins(
    kg: Kg, home: Path, tmp_path: Path
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "kairo-guard.toml").write_text(_router("observe"))
    (tmp_path / "kairo-guard.toml").write_text(_router("filter"))

    assert _scan_mode(kg, tmp_path) == "filter"


@pytest.mark.parametrize("how", ["option", "environment"])
def test_when_a_config_is_named_then_it_wins_over_both_directories(
    how: str, kg: Kg, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "kairo-guard.toml").write_text(_router("observe"))
    (tmp_path / "kairo-guard.toml").write_text(_router("filter"))
    (tmp_path / "named.toml").write_text(_router("enforce"))
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n')
    if how == "environment":
        monkeypatch.setenv("KAIRO_GUARD_CONFIG", "named.toml")
    named = ["--config", "named.toml"] if how == "option" else []

    result = kg(*named, "scan", "in.jsonl", "--sink", "router", "--report", "r.json")

    assert result.code == 1
    assert json.loads((tmp_path / "r.json").read_text())["mode"] == "enforce"


def test_when_the_state_directory_s_config_is_invalid_then_commands_exit_2_naming_it(
    kg: Kg, home: Path, tmp_path: Path
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "kairo-guard.toml").write_text("[guard\n")
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n')

    result = kg("scan", "in.jsonl", "--sink", "shared-eval")

    assert result.code == 2
    assert str(home / "kairo-guard.toml") in result.err
    assert "not valid TOML" in result.err


def test_when_no_config_exists_anywhere_then_config_check_exits_2(kg: Kg) -> None:
    result = kg("config", "check")

    assert result.code == 2
    assert "no config file" in result.err


def test_when_the_config_sets_the_home_then_keys_init_writes_the_key_there(
    kg: Kg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAIRO_GUARD_HOME")
    (tmp_path / "kairo-guard.toml").write_text('[guard]\nhome = "from-config"\n')

    result = kg("keys", "init")

    assert result.code == 0, result.err
    assert (tmp_path / "from-config" / KEY_FILE_NAME).is_file()
