"""Which ``kairo-guard.toml`` is read: argument > KAIRO_GUARD_CONFIG > ./ > state directory.

Each place holds a file that declares one sink named after the place, so the sinks
of the settings say which file won.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kairo_guard import ConfigError
from kairo_guard.config import Settings, find_config_file, load_settings

PLACES = ("argument", "environment", "cwd", "home")


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Where each place's file would be; the current directory is a fresh one."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return {
        "argument": tmp_path / "arg" / "kairo-guard.toml",
        "environment": tmp_path / "env" / "kairo-guard.toml",
        "cwd": work / "kairo-guard.toml",
        "home": tmp_path / "state" / "kairo-guard.toml",
    }


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _declare(path: Path, place: str) -> Path:
    return _write(path, f'[sinks.from-{place}]\nkind = "shared-eval"\n')


def _load(places: dict[str, Path], present: set[str]) -> Settings:
    """Load settings with the argument and environment set only if their place is present."""
    env = {"KAIRO_GUARD_HOME": str(places["home"].parent)}
    if "environment" in present:
        env["KAIRO_GUARD_CONFIG"] = str(places["environment"])
    config_file = places["argument"] if "argument" in present else None
    return load_settings(config_file=config_file, env=env)


@pytest.mark.parametrize(
    ("winner", "loser"),
    [(w, lo) for i, w in enumerate(PLACES) for lo in PLACES[i + 1 :]],
)
def test_when_two_places_hold_a_file_then_the_earlier_place_wins(
    winner: str, loser: str, places: dict[str, Path]
) -> None:
    for place in (winner, loser):
        _declare(places[place], place)

    settings = _load(places, {winner, loser})

    assert list(settings.sinks) == [f"from-{winner}"]
    assert settings.config_file == places[winner]


@pytest.mark.parametrize("given_by", ["argument", "environment", "default"])
def test_when_only_the_state_directory_holds_a_file_then_it_is_read(
    given_by: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state" if given_by != "default" else tmp_path / ".kairo-guard"
    path = _declare(state / "kairo-guard.toml", "home")
    home = state if given_by == "argument" else None
    env = {"KAIRO_GUARD_HOME": str(state)} if given_by == "environment" else {}

    settings = load_settings(home=home, env=env)

    assert settings.config_file == path
    assert list(settings.sinks) == ["from-home"]
    assert settings.home.absolute() == state


def test_when_the_home_argument_and_environment_differ_then_the_argument_s_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _declare(tmp_path / "env-state" / "kairo-guard.toml", "env-state")
    path = _declare(tmp_path / "arg-state" / "kairo-guard.toml", "arg-state")

    found = find_config_file(
        home=tmp_path / "arg-state", env={"KAIRO_GUARD_HOME": str(tmp_path / "env-state")}
    )

    assert found == path


def test_when_no_place_holds_a_file_then_defaults_apply(places: dict[str, Path]) -> None:
    settings = _load(places, set())

    assert settings.config_file is None
    assert dict(settings.sinks) == {}


UNSAFE_RULE = (
    '[[rules]]\nid = "leak"\neffect = "allow"\nreason = "r"\n'
    'data_classes = ["customer_content"]\nsink_kinds = ["shared-training"]\n'
)
BROKEN = ("not-toml", "invalid", "unsafe-rule", "a-directory", "a-dangling-link")


def _break(path: Path, how: str) -> None:
    """Leave at ``path`` a config file that is there but cannot be used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "a-directory":
        path.mkdir()
    elif how == "a-dangling-link":
        os.symlink(path.parent / "gone.toml", path)
    else:
        texts = {"not-toml": "[guard\n", "invalid": 'colour = "blue"\n'}
        path.write_text(texts.get(how, UNSAFE_RULE))


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("breakage", BROKEN)
def test_when_the_file_at_a_place_is_broken_then_loading_fails_naming_it(
    place: str, breakage: str, places: dict[str, Path]
) -> None:
    _break(places[place], breakage)
    for later in PLACES[PLACES.index(place) + 1 :]:
        _declare(places[later], later)  # a good file further down is no way out

    with pytest.raises(ConfigError) as caught:
        _load(places, {place})

    assert str(places[place]) in str(caught.value)


def test_when_a_named_file_is_missing_then_loading_fails(places: dict[str, Path]) -> None:
    _declare(places["cwd"], "cwd")

    with pytest.raises(ConfigError, match="cannot read config file"):
        _load(places, {"environment"})


# -- the file and the state directory ---------------------------------------------------


def test_when_a_file_found_in_the_state_directory_names_another_home_then_it_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "state" / "kairo-guard.toml", f'[guard]\nhome = "{tmp_path / "elsewhere"}"\n')

    with pytest.raises(ConfigError, match="names another state directory"):
        load_settings(env={"KAIRO_GUARD_HOME": str(tmp_path / "state")})


def test_when_a_file_found_in_the_state_directory_names_that_directory_then_it_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "state" / "kairo-guard.toml", '[guard]\nhome = "state"\n')

    settings = load_settings(env={"KAIRO_GUARD_HOME": str(tmp_path / "state")})

    assert settings.home == tmp_path / "state"


def test_when_the_current_directory_s_file_sets_home_then_that_home_s_file_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "kairo-guard.toml", f'[guard]\nhome = "{tmp_path / "state"}"\n')
    _write(tmp_path / "state" / "kairo-guard.toml", "[guard\n")  # never opened

    settings = load_settings(env={})

    assert settings.home == tmp_path / "state"
    assert settings.config_file == tmp_path / "kairo-guard.toml"


@pytest.mark.parametrize(
    ("home", "env_home", "expected"),
    [
        ("arg", "env", "arg"),
        (None, "env", "env"),
        (None, None, "file"),
    ],
)
def test_when_home_is_given_in_several_ways_then_argument_then_environment_then_file_wins(
    home: str | None,
    env_home: str | None,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "kairo-guard.toml", f'[guard]\nhome = "{tmp_path / "file"}"\n')
    env = {"KAIRO_GUARD_HOME": str(tmp_path / env_home)} if env_home else {}

    settings = load_settings(home=tmp_path / home if home else None, config_file=path, env=env)

    assert settings.home == tmp_path / expected
