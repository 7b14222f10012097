"""``kairo-guard replicas list|retire``: the ingestion replicas that share this store.

Every state directory whose middleware ingests into a shared store is a replica, named
by its ``KAIRO_GUARD_AUDIT_LOG_ID`` (:mod:`kairo_guard.detect.coverage`). Checks at
shared sinks wait for each replica's index, so a replica gone for good (its host
removed, its spool indexed or lost) keeps them refusing with ``index.lagging`` until it
is retired here. A replica heard from recently is still running: its indexer would
publish again and undo the retirement, so it is refused without ``--force``.
"""

from __future__ import annotations

import click

from kairo_guard.cli.common import EXIT_USAGE, Exit, handle_errors, open_guard

RETIRE_QUIET_SECONDS = 60.0
"""A replica heard from within this is running and is not retired without --force."""


@click.group()
def replicas() -> None:
    """Ingestion replicas sharing this store, and how far each has indexed."""


@replicas.command("list")
@click.pass_context
@handle_errors
def replicas_list(ctx: click.Context) -> None:
    """Each replica: how far its index is behind the store's clock, when it was last
    heard from."""
    guard = open_guard(ctx)
    store, own = guard.store, guard.settings.audit_log_id
    now = store.store_time()
    known = store.replicas()
    if not known:
        click.echo("no ingestion replica has used this store")
        return
    click.echo(f"{'replica':<34} {'index behind':>14} {'last heard':>12}")
    for r in known:
        behind = "nothing yet" if r.covered_until <= 0 else f"{now - r.covered_until:.1f} s"
        mark = "  (this state directory)" if r.replica_id == own else ""
        click.echo(f"{r.replica_id:<34} {behind:>14} {now - r.heartbeat:>10.1f} s{mark}")


@replicas.command("retire")
@click.argument("replica")
@click.option("--force", is_flag=True, help="Retire it even though it was heard from lately.")
@click.pass_context
@handle_errors
def replicas_retire(ctx: click.Context, replica: str, force: bool) -> None:
    """Forget REPLICA, gone for good: checks stop waiting for its index (audited)."""
    guard = open_guard(ctx)
    store = guard.store
    found = {r.replica_id: r for r in store.replicas()}.get(replica)
    if found is None:
        raise Exit(EXIT_USAGE, f"error: no replica {replica!r} (see: kairo-guard replicas list)")
    heard = store.store_time() - found.heartbeat
    if heard < RETIRE_QUIET_SECONDS and not force:
        raise Exit(
            EXIT_USAGE,
            f"error: replica {replica!r} was heard from {heard:.0f} s ago: it is running "
            f"(stop it first; a replica silent for {RETIRE_QUIET_SECONDS:.0f} s can be "
            "retired, or use --force)",
        )
    store.retire_replica(replica)
    guard.audit.append(
        {
            "event": "replica.retire",
            "replica": replica,
            "last_heard_s": round(heard, 1),
            "covered_until": found.covered_until,
            "forced": force,
        }
    )
    click.echo(f"retired {replica}: checks no longer wait for its index")
