"""Re-running ``agreements grant ... --reference R --for D`` is idempotent and says so."""

from __future__ import annotations

import json

import pytest

from kairo_guard.cli.main import main


def _listed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["agreements", "list", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_when_a_grant_for_a_duration_is_run_again_then_it_keeps_the_one_agreement(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["agreements", "grant", "acme", "--reference", "DPA-9", "--for", "365d"]
    assert main(command) == 0
    first = capsys.readouterr().out
    assert first.startswith("granted agr_")
    assert main(command) == 0
    again = capsys.readouterr().out
    rows = _listed(capsys)
    assert len(rows) == 1
    assert str(rows[0]["id"]) in again
    assert "already active" in again
    assert not again.startswith("granted")


def test_when_a_grant_for_another_duration_is_run_then_it_is_refused_as_bad_usage(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["agreements", "grant", "acme", "--reference", "DPA-9", "--for", "365d"]) == 0
    capsys.readouterr()
    assert main(["agreements", "grant", "acme", "--reference", "DPA-9", "--for", "30d"]) == 2
    assert "already active" in capsys.readouterr().err
    assert len(_listed(capsys)) == 1


def test_when_an_absolute_expiry_is_granted_again_then_the_message_says_nothing_changed(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["agreements", "grant", "acme", "--reference", "DPA-1", "--expires", "2099-01-01"]
    assert main(command) == 0
    assert capsys.readouterr().out.startswith("granted agr_")
    assert main(command) == 0
    assert "already active" in capsys.readouterr().out
