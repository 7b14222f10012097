"""``kairo-guard agreements grant|revoke|list``: a tenant's fine-tune agreements.

``revoke`` exits 1 when there was nothing to revoke.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click
import orjson

from kairo_guard.cli.common import EXIT_USAGE, EXIT_VIOLATION, Exit, handle_errors, open_guard
from kairo_guard.config import parse_duration


@click.group()
def agreements() -> None:
    """Fine-tune agreements (a tenant's data processing agreement)."""


def _parse_expiry(expires: str | None, duration: str | None) -> float | None:
    if expires and duration:
        raise Exit(EXIT_USAGE, "error: give --expires or --for, not both")
    if expires:
        moment = datetime.fromisoformat(expires)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return None


@agreements.command("grant")
@click.argument("tenant")
@click.option("--expires", help="ISO 8601 date or time the agreement ends (UTC if no zone).")
@click.option("--for", "duration", help="Duration instead of --expires, e.g. 365d.")
@click.option("--reference", default="", help="Contract reference to keep with it.")
@click.option(
    "--scope",
    default="fine-tune",
    show_default=True,
    help="What the agreement covers (comma-separated words); fine-tunes need fine-tune.",
)
@click.pass_context
@handle_errors
def agreements_grant(
    ctx: click.Context,
    tenant: str,
    expires: str | None,
    duration: str | None,
    reference: str,
    scope: str,
) -> None:
    """Grant TENANT an agreement (by default one that permits its fine-tunes)."""
    expires_at = _parse_expiry(expires, duration)
    # --for is a term relative to the grant: re-running the command repeats it
    valid_for = parse_duration(duration) if duration else None
    guard = open_guard(ctx)
    agreement, created = guard.tenancy.agreements.grant_once(
        tenant, expires_at=expires_at, reference=reference, scope=scope, valid_for=valid_for
    )
    until = _iso(agreement.expires_at) if agreement.expires_at else "no expiry"
    if created:
        click.echo(f"granted {agreement.id} to {tenant} ({until})")
    else:
        click.echo(
            f"agreement {agreement.id} of {tenant} under reference {reference!r} is already "
            f"active ({until}): nothing changed"
        )


@agreements.command("revoke")
@click.argument("tenant")
@click.option("--id", "agreement_id", help="Revoke only this agreement.")
@click.pass_context
@handle_errors
def agreements_revoke(ctx: click.Context, tenant: str, agreement_id: str | None) -> None:
    """Revoke TENANT's agreements (exit 1 if there was none to revoke)."""
    count = open_guard(ctx).revoke_agreement(tenant, agreement_id)
    click.echo(f"revoked {count} agreement(s) of {tenant}")
    if count == 0:
        raise Exit(EXIT_VIOLATION)


@agreements.command("list")
@click.option("--tenant", help="Only this tenant's agreements.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_context
@handle_errors
def agreements_list(ctx: click.Context, tenant: str | None, as_json: bool) -> None:
    """List agreements and whether each is active now."""

    now = datetime.now(UTC).timestamp()
    rows = open_guard(ctx).agreements(tenant)
    for a in rows:
        state = "active" if a.active(now) else ("revoked" if a.revoked_at else "expired")
        if as_json:
            doc = {
                "id": a.id,
                "tenant": a.tenant,
                "state": state,
                "scope": a.scope,
                "granted_at": a.granted_at,
                "expires_at": a.expires_at,
                "revoked_at": a.revoked_at,
                "reference": a.reference,
            }
            click.echo(orjson.dumps(doc).decode())
        else:
            expiry = _iso(a.expires_at) if a.expires_at else "-"
            click.echo(
                f"{a.id}  {a.tenant:<24} {state:<8} {a.scope:<12} expires {expiry}  {a.reference}"
            )
    if not rows and not as_json:
        click.echo("no agreements")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
