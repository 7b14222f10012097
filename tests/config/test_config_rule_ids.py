"""Two rules sharing an id are a config problem ``config check`` reports, as the
guard refuses to start on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kairo_guard.config import check_config_file, load_settings
from kairo_guard.core.exceptions import ConfigError

_TWO_RULES_ONE_ID = """
[[rules]]
id = "user.deny-ops"
effect = "deny"
reason = "one"
data_classes = ["operator_public"]

[[rules]]
id = "user.deny-ops"
effect = "deny"
reason = "two"
data_classes = ["operator_public"]
"""


def test_when_two_rules_share_an_id_then_config_check_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "kairo-guard.toml"
    path.write_text(_TWO_RULES_ONE_ID)
    problems = check_config_file(path)
    assert any("user.deny-ops" in p for p in problems), problems
    with pytest.raises(ConfigError, match="share the id"):
        load_settings(home=tmp_path / "state", config_file=path, env={})
