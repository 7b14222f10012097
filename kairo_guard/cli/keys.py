"""``kairo-guard keys init|rotate``: the secret key ring in the state directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click

from kairo_guard.cli.common import EXIT_USAGE, Exit, handle_errors, state_home
from kairo_guard.core.keys import KeyRing, fingerprint_of
from kairo_guard.store.keyfile import ENV_KEY_FILE, KEY_FILE_NAME, read_key_file, write_key_file


@click.group()
def keys() -> None:
    """Manage the secret key ring."""


def _key_path(ctx: click.Context) -> Path:
    """Where the key file is: ``KAIRO_GUARD_KEY_FILE``, else in the state directory."""
    return Path(os.environ.get(ENV_KEY_FILE) or state_home(ctx) / KEY_FILE_NAME)


@keys.command("init")
@click.option("--key-id", default="k1", show_default=True, help="Id of the new key.")
@click.pass_context
@handle_errors
def keys_init(ctx: click.Context, key_id: str) -> None:
    """Create a key file (mode 0600) in the state directory; never overwrites."""
    path = _key_path(ctx)
    ring = KeyRing.generate(key_id)
    write_key_file(path, ring)
    click.echo(f"created {path} (key id {key_id}, fingerprint {fingerprint_of(ring)})")
    click.echo(
        "keep it secret and backed up: seals and the audit log cannot be verified without it"
    )


@keys.command("rotate")
@click.option("--key-id", required=True, help="Id of the new signing key.")
@click.pass_context
@handle_errors
def keys_rotate(ctx: click.Context, key_id: str) -> None:
    """Add a new signing key; older keys stay to verify existing seals."""
    path = _key_path(ctx)
    ring = read_key_file(path)
    if key_id in ring.keys:
        raise Exit(EXIT_USAGE, f"error: key id {key_id!r} already exists")
    rotated = KeyRing(
        keys={**ring.keys, key_id: secrets.token_bytes(32)},
        signing_key_id=key_id,
        pseudonym_key_id=ring.pseudonym_key_id,
    )
    write_key_file(path, rotated, overwrite=True)
    click.echo(
        f"{path}: new signing key {key_id}; {len(ring.keys)} older key(s) kept for verification"
    )
