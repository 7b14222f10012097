"""``kairo-guard audit verify``: check the hash-chained audit log and its signed head."""

from __future__ import annotations

import click

from kairo_guard.assembly import open_store
from kairo_guard.audit.log import verify_audit
from kairo_guard.audit_opening import open_audit
from kairo_guard.cli.common import EXIT_VIOLATION, Exit, cli_settings, handle_errors
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD
from kairo_guard.guard import AUDIT_DIR_NAME
from kairo_guard.store.keyfile import load_key_ring


@click.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
@click.pass_context
@handle_errors
def audit_verify(ctx: click.Context) -> None:
    """Verify the audit log, its signed head and its anchor in the store (exit 1 on any
    tampering, a rollback or a deleted log included)."""
    # no Guard (which would append to the log): the key, the log and the anchor only
    settings = cli_settings(ctx)
    ring = load_key_ring(settings.home)
    store = open_store(settings)
    try:
        anchor = store.get_audit_anchor(settings.audit_log_id)
    finally:
        store.close()
    keys = ring.subkeys(PURPOSE_AUDIT_HEAD)
    result = verify_audit(settings.home / AUDIT_DIR_NAME, keys, anchor)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not result.ok:
        click.echo(f"audit log FAILED verification: {result.problem}", err=True)
        raise Exit(EXIT_VIOLATION)
    click.echo(
        f"audit log ok: {result.entries} entries, "
        f"{result.signed_entries} covered by the signed head"
    )


@audit.command("repair")
@click.pass_context
@handle_errors
def audit_repair(ctx: click.Context) -> None:
    """Move a torn tail (a writer killed mid-append) aside and record it in the chain.

    Every entry before the tear stays. A log damaged inside its signed range, or behind
    its anchor, is not repaired: that is tampering or loss (exit 2, as for any
    integrity error)."""
    settings = cli_settings(ctx)
    ring = load_key_ring(settings.home)
    store = open_store(settings)
    try:
        log = open_audit(settings, ring, store)
        try:
            moved = log.repair()
        finally:
            log.close()
    finally:
        store.close()
    if moved:
        click.echo(f"audit log repaired: a torn tail of {moved} bytes moved to audit.torn.*")
    else:
        click.echo("audit log whole: nothing to repair")
