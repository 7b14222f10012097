"""``kairo-guard config check``: validate a ``kairo-guard.toml`` (the settings live in
:mod:`kairo_guard.config`; this is only its command group)."""

from __future__ import annotations

from pathlib import Path

import click

from kairo_guard.cli.common import EXIT_USAGE, Exit, handle_errors
from kairo_guard.config import DEFAULT_CONFIG_FILE, check_config_file, find_config_file


@click.group()
def config() -> None:
    """Inspect configuration."""


@config.command("check")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
@handle_errors
def config_check(ctx: click.Context, file: Path | None) -> None:
    """Validate a kairo-guard.toml and explain every problem (exit 2 if any).

    Without FILE, the file the guard would read: --config, KAIRO_GUARD_CONFIG,
    ./kairo-guard.toml, then kairo-guard.toml in the state directory.
    """
    opts = ctx.find_root().params
    path = file or find_config_file(config_file=opts.get("config"), home=opts.get("home"))
    if path is None:
        raise Exit(
            EXIT_USAGE, f"error: no config file at {DEFAULT_CONFIG_FILE} nor in the state directory"
        )
    if not (path.exists() or path.is_symlink()):
        raise Exit(EXIT_USAGE, f"error: no config file at {path}")
    problems = check_config_file(path)
    if problems:
        click.echo(f"{path}: {len(problems)} problem(s)", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        raise Exit(EXIT_USAGE)
    click.echo(f"{path}: ok")
