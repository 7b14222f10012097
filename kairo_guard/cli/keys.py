"""``kairo-guard keys init|rotate``: the secret key ring in the state directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click

from kairo_guard.cli.common import EXIT_USAGE, Exit, handle_errors, state_home
from kairo_guard.core.keys import KeyRing, fingerprint_of
from kairo_guard.core.signing import SignerKeys
from kairo_guard.store.keyfile import (
    ENV_KEY_FILE,
    KEY_FILE_NAME,
    SIGNER_FILE_NAME,
    VERIFY_FILE_NAME,
    load_signer,
    load_verify_keys,
    read_key_file,
    write_key_file,
    write_signer_file,
    write_verify_file,
)


@click.group()
def keys() -> None:
    """Manage the secret key ring."""


def _key_path(ctx: click.Context) -> Path:
    """Where the key file is: ``KAIRO_GUARD_KEY_FILE``, else in the state directory."""
    return Path(os.environ.get(ENV_KEY_FILE) or state_home(ctx) / KEY_FILE_NAME)


@keys.command("init")
@click.option("--key-id", default="k1", show_default=True, help="Id of the new key.")
@click.option(
    "--signer-id", default="s1", show_default=True, help="Id of the vetting role's new key."
)
@click.option(
    "--no-signer",
    is_flag=True,
    help="Create no signing key (a state directory of a role that only verifies).",
)
@click.pass_context
@handle_errors
def keys_init(ctx: click.Context, key_id: str, signer_id: str, no_signer: bool) -> None:
    """Create the key file (mode 0600) and the vetting role's Ed25519 key (signer.json,
    mode 0600, with its public half in verify-keys.json); never overwrites."""
    path = _key_path(ctx)
    ring = KeyRing.generate(key_id)
    write_key_file(path, ring)
    click.echo(f"created {path} (key id {key_id}, fingerprint {fingerprint_of(ring)})")
    click.echo(
        "keep it secret and backed up: seals and the audit log cannot be verified without it"
    )
    home = state_home(ctx)
    if no_signer or (home / SIGNER_FILE_NAME).exists():
        return
    _save_signer(home, SignerKeys.generate(signer_id), overwrite=False)
    click.echo(
        f"created {home / SIGNER_FILE_NAME} (Ed25519 vetting key {signer_id}) "
        f"and {home / VERIFY_FILE_NAME} (its public key)"
    )


@keys.command("rotate-signer")
@click.option("--key-id", required=True, help="Id of the new Ed25519 signing key.")
@click.pass_context
@handle_errors
def keys_rotate_signer(ctx: click.Context, key_id: str) -> None:
    """Add a new vetting key; older ones stay, so shards they signed still verify."""
    home = state_home(ctx)
    signer = load_signer(home, env={})
    if signer is None:
        raise Exit(EXIT_USAGE, f"error: no {home / SIGNER_FILE_NAME}: run 'kairo-guard keys init'")
    _save_signer(home, signer.rotated(key_id), overwrite=True)
    click.echo(f"{home / SIGNER_FILE_NAME}: new signing key {key_id}; {len(signer.keys)} kept")
    click.echo(f"give training jobs the new {home / VERIFY_FILE_NAME}")


def _save_signer(home: Path, signer: SignerKeys, *, overwrite: bool) -> None:
    """Write the signer file and add its public keys to the verification file (the
    files only: keys given in the environment are not copied into them)."""
    write_signer_file(home / SIGNER_FILE_NAME, signer, overwrite=overwrite)
    public = load_verify_keys(home, env={}).merged(signer.public())
    write_verify_file(home / VERIFY_FILE_NAME, public)


@keys.command("public")
@click.pass_context
@handle_errors
def keys_public(ctx: click.Context) -> None:
    """Print the public keys permitting labels verify with (a KAIRO_GUARD_VERIFY_KEYS value)."""
    home = state_home(ctx)
    signer = load_signer(home)
    public = load_verify_keys(home)
    if signer is not None:
        public = public.merged(signer.public())
    if not public.keys:
        raise Exit(EXIT_USAGE, "error: no signing or verification keys here")
    click.echo(public.to_value())


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
