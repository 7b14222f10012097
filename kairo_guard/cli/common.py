"""What every CLI command shares: exit codes, error handling, opening the guard."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kairo_guard.core.exceptions import KairoGuardError

if TYPE_CHECKING:
    from kairo_guard.config import Settings
    from kairo_guard.guard import Guard

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2
ENV_DEBUG = "KAIRO_GUARD_DEBUG"
F = TypeVar("F", bound=Callable[..., Any])


class Exit(Exception):
    """Leave the CLI with a code, after printing ``message`` to stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def handle_errors(func: F) -> F:
    """Turn library errors into a clear message and exit 2; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exit:
            raise
        except KairoGuardError as exc:
            raise Exit(EXIT_USAGE, f"error: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise Exit(EXIT_USAGE, f"error: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def open_guard(ctx: click.Context, **overrides: Any) -> Guard:
    """Build the Guard from the global options (imported lazily: keeps --help fast)."""
    from kairo_guard.guard import Guard

    opts = ctx.find_root().params
    guard = Guard(home=opts.get("home"), config_file=opts.get("config"), **overrides)
    ctx.call_on_close(guard.close)
    return guard


def cli_settings(ctx: click.Context) -> Settings:
    """Resolve the settings from the global ``--home`` and ``--config`` options.

    Raises:
        ConfigError: for a bad config file (the commands turn it into exit 2).
    """
    from kairo_guard.config import load_settings

    opts = ctx.find_root().params
    return load_settings(home=opts.get("home"), config_file=opts.get("config"))


def state_home(ctx: click.Context) -> Path:
    """The state directory the guard would use, as the config resolves it."""
    return cli_settings(ctx).home


def report_option(help_text: str) -> Callable[[F], F]:
    """The ``--report FILE`` option of the commands that write a JSON report."""
    return click.option(
        "--report",
        "report_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help=help_text,
    )
