"""``kairo-guard tenants add|revoke-keys``: tenant API keys for the ingestion middleware."""

from __future__ import annotations

import click

from kairo_guard.cli.common import EXIT_VIOLATION, Exit, handle_errors, open_guard
from kairo_guard.core.types import validate_tenant
from kairo_guard.ingest.apikeys import new_api_key


@click.group()
def tenants() -> None:
    """Tenant API keys for the ingestion middleware."""


@tenants.command("add")
@click.argument("tenant")
@click.pass_context
@handle_errors
def tenants_add(ctx: click.Context, tenant: str) -> None:
    """Create an API key for TENANT and print it once (only its hash is kept)."""

    validate_tenant(tenant)
    guard = open_guard(ctx)
    key = new_api_key(guard.store, tenant)
    guard.audit.append(
        {
            "event": "api_key.create",
            "tenant": guard.keys.pseudonym(tenant),
            "key_id": key.split(".")[1],
        }
    )
    click.echo(key)
    click.echo(f"API key for {tenant}: shown once, store it now", err=True)


@tenants.command("revoke-keys")
@click.argument("tenant")
@click.option("--key-id", help="Revoke only this key (the part after 'kgk.').")
@click.pass_context
@handle_errors
def tenants_revoke_keys(ctx: click.Context, tenant: str, key_id: str | None) -> None:
    """Revoke TENANT's API keys (exit 1 if there was none to revoke)."""
    guard = open_guard(ctx)
    count = guard.store.revoke_api_keys(tenant, now=guard.clock(), key_id=key_id)
    guard.audit.append(
        {"event": "api_key.revoke", "tenant": guard.keys.pseudonym(tenant), "revoked": count}
    )
    click.echo(f"revoked {count} key(s) of {tenant}")
    if count == 0:
        raise Exit(EXIT_VIOLATION)
