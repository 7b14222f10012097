"""The ``kairo-guard`` command line: the root group, its global options, and ``main``.

Each command group lives in its own module (``keys``, ``config``, ``label``, ``scan``,
``agreements``, ``tenants``, ``fingerprints``, ``telemetry``, ``audit``, ``replicas``, ``dataset``,
``retention``/``erase``/``export`` in ``tenant_data``, ``demo``); this module only
gathers them.

Exit codes (a contract): 0 all allowed / all good; 1 a violation found or an integrity
check failed; 2 bad usage, bad config, unreadable input.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from kairo_guard.cli import tenant_data
from kairo_guard.cli.agreements import agreements
from kairo_guard.cli.audit import audit
from kairo_guard.cli.common import ENV_DEBUG, EXIT_OK, EXIT_USAGE, Exit
from kairo_guard.cli.config import config
from kairo_guard.cli.datasets import dataset
from kairo_guard.cli.demo import demo
from kairo_guard.cli.fingerprints import fingerprints
from kairo_guard.cli.keys import keys
from kairo_guard.cli.label import label
from kairo_guard.cli.replicas import replicas
from kairo_guard.cli.scan import scan
from kairo_guard.cli.telemetry import telemetry
from kairo_guard.cli.tenants import tenants
from kairo_guard.config import ENV_CONFIG, ENV_HOME
from kairo_guard.core.exceptions import KeyringError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    envvar=ENV_HOME,
    help="State directory (default ./.kairo-guard).",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=ENV_CONFIG,
    help="kairo-guard.toml to use (default ./kairo-guard.toml, else the one in the "
    "state directory, if present).",
)
@click.version_option(package_name="kairo-guard")
def cli(home: Path | None, config: Path | None) -> None:
    """Keep customer content out of shared model training."""


for _command in (
    keys,
    config,
    label,
    scan,
    agreements,
    tenants,
    fingerprints,
    telemetry,
    audit,
    replicas,
    dataset,
    tenant_data.retention,
    tenant_data.erase,
    tenant_data.export,
    demo,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kairo-guard`` script; returns the exit code."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except Exit as exc:
        if exc.message:
            click.echo(exc.message, err=True)
        return exc.code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except KeyringError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    except Exception as exc:
        if os.environ.get(ENV_DEBUG):
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} (set {ENV_DEBUG}=1 for details)", err=True
        )
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
