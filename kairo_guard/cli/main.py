"""The ``kairo-guard`` command line.

Exit codes (a contract): 0 all allowed / all good; 1 a violation found or an integrity
check failed; 2 bad usage, bad config, unreadable input.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from kairo_guard.cli import tenant_data
from kairo_guard.cli.common import (
    ENV_DEBUG,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VIOLATION,
    Exit,
    handle_errors,
    open_guard,
)
from kairo_guard.cli.datasets import dataset
from kairo_guard.cli.records import label, scan
from kairo_guard.config import ENV_CONFIG, ENV_HOME, check_config_file, parse_duration
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
    help="kairo-guard.toml to use (default ./kairo-guard.toml if present).",
)
@click.version_option(package_name="kairo-guard")
def cli(home: Path | None, config: Path | None) -> None:
    """Keep customer content out of shared model training."""


# -- keys ----------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Manage the secret key ring."""


@keys.command("init")
@click.option("--key-id", default="k1", show_default=True, help="Id of the new key.")
@click.pass_context
@handle_errors
def keys_init(ctx: click.Context, key_id: str) -> None:
    """Create a key file (mode 0600) in the state directory; never overwrites."""
    from kairo_guard.core.keys import (
        ENV_KEY_FILE,
        KEY_FILE_NAME,
        KeyRing,
        fingerprint_of,
        write_key_file,
    )

    home = ctx.find_root().params.get("home") or Path(".kairo-guard")
    path = Path(os.environ.get(ENV_KEY_FILE) or home / KEY_FILE_NAME)
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
    import secrets

    from kairo_guard.core.keys import (
        ENV_KEY_FILE,
        KEY_FILE_NAME,
        KeyRing,
        read_key_file,
        write_key_file,
    )

    home = ctx.find_root().params.get("home") or Path(".kairo-guard")
    path = Path(os.environ.get(ENV_KEY_FILE) or home / KEY_FILE_NAME)
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


# -- config --------------------------------------------------------------------------


@cli.group()
def config() -> None:
    """Inspect configuration."""


@config.command("check")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def config_check(ctx: click.Context, file: Path | None) -> None:
    """Validate a kairo-guard.toml and explain every problem (exit 2 if any)."""
    path = file or ctx.find_root().params.get("config") or Path("kairo-guard.toml")
    if not path.is_file():
        raise Exit(EXIT_USAGE, f"error: no config file at {path}")
    problems = check_config_file(path)
    if problems:
        click.echo(f"{path}: {len(problems)} problem(s)", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        raise Exit(EXIT_USAGE)
    click.echo(f"{path}: ok")


# -- agreements ----------------------------------------------------------------------


@cli.group()
def agreements() -> None:
    """Fine-tune agreements (a tenant's data processing agreement)."""


def _parse_expiry(expires: str | None, duration: str | None) -> float | None:
    if expires and duration:
        raise Exit(EXIT_USAGE, "error: give --expires or --for, not both")
    if duration:
        return datetime.now(UTC).timestamp() + parse_duration(duration)
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
    guard = open_guard(ctx)
    agreement = guard.grant_agreement(
        tenant, expires_at=_parse_expiry(expires, duration), reference=reference, scope=scope
    )
    until = _iso(agreement.expires_at) if agreement.expires_at else "no expiry"
    click.echo(f"granted {agreement.id} to {tenant} ({until})")


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
    import orjson

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


# -- tenants ---------------------------------------------------------------------------


@cli.group()
def tenants() -> None:
    """Tenant API keys for the ingestion middleware."""


@tenants.command("add")
@click.argument("tenant")
@click.pass_context
@handle_errors
def tenants_add(ctx: click.Context, tenant: str) -> None:
    """Create an API key for TENANT and print it once (only its hash is kept)."""
    from kairo_guard.core.types import validate_tenant
    from kairo_guard.ingest.apikeys import new_api_key

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


# -- fingerprints ------------------------------------------------------------------------


@cli.group()
def fingerprints() -> None:
    """The fingerprint index of tenants' content (the laundering net)."""


@fingerprints.command("export")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--fp-rate",
    default=0.001,
    show_default=True,
    type=float,
    help="False-positive rate per fingerprint (a false positive blocks).",
)
@click.pass_context
@handle_errors
def fingerprints_export(ctx: click.Context, out: Path, fp_rate: float) -> None:
    """Write the index as a signed Bloom filter for checks away from the store."""
    count = open_guard(ctx).export_fingerprint_filter(out, fp_rate=fp_rate)
    click.echo(f"wrote {out}: {count:,} fingerprints, {fp_rate:g} false positives each")


@fingerprints.command("delete")
@click.argument("tenant")
@click.pass_context
@handle_errors
def fingerprints_delete(ctx: click.Context, tenant: str) -> None:
    """Forget every fingerprint of TENANT (its content no longer blocks shared sinks)."""
    guard = open_guard(ctx)
    count = guard.fingerprints.delete(tenant)
    guard.audit.append(
        {"event": "fingerprints.delete", "tenant": guard.keys.pseudonym(tenant), "rows": count}
    )
    click.echo(f"deleted {count:,} fingerprints of {tenant}")


# -- telemetry ---------------------------------------------------------------------------


@cli.group()
def telemetry() -> None:
    """Anonymized telemetry: the one way customer-derived data reaches shared models."""


@telemetry.command("aggregate")
@click.argument("events_path", metavar="EVENTS", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--k", "k", type=int, help="Minimum distinct tenants per group (default 10).")
@click.option("--window", help="Time window, e.g. 1h, 15m, 1d (default 1h).")
@click.option(
    "--keep-messages",
    is_flag=True,
    help="Publish error messages: scrubbed of PII, re-checked, and only those k tenants sent.",
)
@click.pass_context
@handle_errors
def telemetry_aggregate(
    ctx: click.Context,
    events_path: Path,
    out: Path,
    k: int | None,
    window: str | None,
    keep_messages: bool,
) -> None:
    """Aggregate raw usage EVENTS (JSONL) into k-anonymous sealed statistics."""
    from kairo_guard.cli.telemetry import aggregate_file

    guard = open_guard(ctx)
    code = aggregate_file(guard, events_path, out, k=k, window=window, keep_messages=keep_messages)
    raise Exit(code)


# -- audit ---------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
@click.pass_context
@handle_errors
def audit_verify(ctx: click.Context) -> None:
    """Verify the audit log and its signed head (exit 1 on any tampering)."""
    from kairo_guard.audit.log import verify_audit
    from kairo_guard.config import load_settings
    from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD, load_key_ring
    from kairo_guard.guard import AUDIT_DIR_NAME

    opts = ctx.find_root().params
    settings = load_settings(home=opts.get("home"), config_file=opts.get("config"))
    ring = load_key_ring(settings.home)
    result = verify_audit(settings.home / AUDIT_DIR_NAME, ring.subkeys(PURPOSE_AUDIT_HEAD))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not result.ok:
        click.echo(f"audit log FAILED verification: {result.problem}", err=True)
        raise Exit(EXIT_VIOLATION)
    click.echo(
        f"audit log ok: {result.entries} entries, "
        f"{result.signed_entries} covered by the signed head"
    )


# -- label, scan, demo live in their own modules -------------------------------------


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the demo's state directory and print it.")
@click.option(
    "--service",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The example ingestion service script: documents then arrive over HTTP.",
)
@handle_errors
def demo(keep: bool, service: Path | None) -> None:
    """Run the end-to-end story on a fresh temporary state directory."""
    from kairo_guard.cli.demo import run_demo

    raise Exit(run_demo(keep=keep, service=service))


cli.add_command(label)
cli.add_command(scan)
cli.add_command(dataset)
for _command in (tenant_data.retention, tenant_data.erase, tenant_data.export):
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
