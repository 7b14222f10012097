"""``kairo-guard demo``: the end-to-end story, told in plain words on a fresh state dir."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

from kairo_guard.audit.log import verify_audit
from kairo_guard.cli.common import Exit, handle_errors
from kairo_guard.core.exceptions import IsolationViolation
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD, KeyRing
from kairo_guard.core.report import CheckReport
from kairo_guard.guard import AUDIT_DIR_NAME, Guard
from kairo_guard.store.keyfile import KEY_FILE_NAME, write_key_file

DOCUMENTS = {
    "acme": [
        {
            "doc": "contract-17",
            "text": "Acme supply agreement: 40,000 units of widget W-7 at $3.10.",
        },
        {"doc": "memo-3", "text": "Acme Q3 plan: expand the Lisbon plant, hire 12 engineers."},
    ],
    "globex": [
        {"doc": "ticket-88", "text": "Globex support ticket: reactor 2 coolant pump is noisy."},
        {"doc": "agent-run-5", "text": "Agent summary for Globex: three invoices are overdue."},
    ],
}


@click.command()
@click.option("--keep", is_flag=True, help="Keep the demo's state directory and print it.")
@click.option(
    "--service",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The example ingestion service script: documents then arrive over HTTP.",
)
@handle_errors
def demo(keep: bool, service: Path | None) -> None:
    """Run the end-to-end story on a fresh temporary state directory."""
    raise Exit(run_demo(keep=keep, service=service))


def _say(text: str = "") -> None:
    click.echo(text)


def _show(report: CheckReport) -> None:
    _say(f"    {report.total} records -> {report.allowed} allowed, {report.blocked} blocked")
    for v in report.violations[:4]:
        _say(f"      record {v.index}: {v.rule}: {v.reason}")


def run_demo(*, keep: bool = False, service: Path | None = None) -> int:
    """Run the story; return 0 if every step turned out as the policy says, else 1.

    With ``service`` (the example ingestion service script), documents arrive over HTTP
    through a real uvicorn running ``GuardMiddleware`` in its own process.
    """
    home = Path(tempfile.mkdtemp(prefix="kairo-guard-demo-"))
    try:
        return _story(home, service)
    finally:
        if keep:
            _say(f"\nstate kept in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


Checks = list[tuple[str, bool]]
"""What each step of the story should have shown, and whether it did."""
Sealed = dict[str, list[dict[str, object]]]


def _story(home: Path, service: Path | None) -> int:
    ring = KeyRing.generate()
    write_key_file(home / KEY_FILE_NAME, ring)
    checks: Checks = []
    with Guard(home=home, key=ring, env={}) as guard:
        _say(f"kairo-guard demo (state directory {home})\n")
        sealed = _sealed_documents(guard, home, service, checks)
        _training_steps(guard, sealed, checks)
        _say("\n6. acme's dataset gets a signed manifest; the model trained on it is acme's.")
        served = _tenant_model(guard, home, sealed["acme"])
        checks.append(("acme's model served to acme only", served == (True, False)))
        _erasure_step(guard, sealed["globex"], checks)

    _say("\n8. The audit log is verified (hash chain and signed head).")
    result = verify_audit(home / AUDIT_DIR_NAME, ring.subkeys(PURPOSE_AUDIT_HEAD))
    _say(
        f"    {'ok' if result.ok else 'FAILED'}: {result.entries} entries"
        + (f" ({result.problem})" if result.problem else "")
    )
    checks.append(("audit log verifies", result.ok))
    return _verdict(checks)


def _sealed_documents(guard: Guard, home: Path, service: Path | None, checks: Checks) -> Sealed:
    """Step 1: the tenants' documents, sealed here or by the ingestion service."""
    if service is not None:
        from kairo_guard.cli.demo_service import ingest_over_http

        sealed = ingest_over_http(guard, home, service, checks)
    else:
        _say("1. Two tenants' documents are sealed as their customer content.")
        sealed = {
            tenant: [guard.label_record(doc, tenant=tenant, source="upload") for doc in docs]
            for tenant, docs in DOCUMENTS.items()
        }
    for tenant, records in sealed.items():
        _say(f"    {tenant}: {len(records)} sealed records")
    return sealed


def _training_steps(guard: Guard, sealed: Sealed, checks: Checks) -> None:
    """Steps 2-5: a shared set, acme's and globex's fine-tunes, a mixed one."""
    _say("\n2. A script tries to build a shared router training set from everything.")
    shared = _shared_attempt(guard, sealed)
    _show(shared)
    total = sum(len(r) for r in sealed.values())
    checks.append(("shared set blocked", shared.allowed == 0 and shared.blocked == total))

    _say("\n3. acme signs a fine-tune agreement; acme's own fine-tune set is built.")
    guard.grant_agreement("acme", reference="DPA-2026-001")
    acme = _fine_tune(guard, "acme", sealed["acme"])
    _show(acme)
    checks.append(("acme fine-tune passes", acme.ok and acme.allowed == len(sealed["acme"])))

    _say("\n4. globex has no agreement; a fine-tune set for globex is attempted.")
    globex = _fine_tune(guard, "globex", sealed["globex"])
    _show(globex)
    checks.append(("globex fine-tune blocked", globex.blocked == len(sealed["globex"])))

    _say("\n5. Someone mixes a globex document into acme's fine-tune set.")
    mixed = _fine_tune(guard, "acme", [*sealed["acme"], sealed["globex"][0]])
    _show(mixed)
    checks.append(("cross-tenant record blocked", mixed.blocked == 1))


def _erasure_step(guard: Guard, globex: list[dict[str, object]], checks: Checks) -> None:
    """Step 7: globex is erased; its seals still in circulation are refused."""
    _say("\n7. globex closes its account: everything of globex is erased.")
    receipt = guard.erase_tenant("globex")
    removed = ", ".join(f"{n} {kind}" for kind, n in sorted(receipt.removed.items()) if n)
    _say(f"    signed receipt for {receipt.tenant} (its pseudonym)")
    _say(f"    removed: {removed or 'no stored rows'}")
    _say("    globex's seals still in circulation are refused from now on:")
    sink = guard.resolve_sink("globex-fine-tune", kind="tenant-fine-tune", tenant="globex")
    after = guard.check(globex, sink=sink, mode="filter")
    _show(after)
    erased = after.by_rule.get("tenant.erased")
    checks.append(("erased tenant's seals refused", erased == len(globex)))


def _verdict(checks: Checks) -> int:
    _say("")
    failed = [name for name, ok in checks if not ok]
    if failed:
        _say(f"demo FAILED: {', '.join(failed)}")
        return 1
    _say(
        "demo finished: customer content stayed out of shared training; "
        "acme's fine-tune ran under its agreement and its model serves acme only; "
        "globex was erased; every decision is in the audit log."
    )
    return 0


def _tenant_model(guard: Guard, home: Path, records: list[dict[str, object]]) -> tuple[bool, bool]:
    """Build, verify and train on acme's dataset; return whether acme and globex may
    call the model registered from it."""
    with guard.tenant_dataset("acme") as builder:
        builder.add_all(records)
        manifest = builder.write(home / "datasets" / "acme-1")
    root = manifest.merkle_root[:16]
    _say(f"    manifest: {manifest.record_count} records, Merkle root {root}...")
    dataset = guard.open_dataset(home / "datasets" / "acme-1")
    sink = guard.resolve_sink("acme-fine-tune", kind="tenant-fine-tune", tenant="acme")
    report = guard.check(dataset, sink=sink)
    _say(f"    the fine-tune sink verified the dataset: {report.allowed} records admitted")
    guard.register_model("acme-router-ft-1", dataset=dataset, owner="acme")
    served = (
        guard.check_model_access("acme-router-ft-1", "acme"),
        guard.check_model_access("acme-router-ft-1", "globex"),
    )
    _say(f"    model acme-router-ft-1: acme may call it: {served[0]}; globex: {served[1]}")
    return served


def _shared_attempt(guard: Guard, sealed: Sealed) -> CheckReport:
    reports: list[CheckReport] = []

    @guard.sink("router-train", kind="shared-training", on_report=reports.append)
    def build_shared_set(records: list[dict[str, object]]) -> int:
        return len(records)

    try:
        build_shared_set([r for rs in sealed.values() for r in rs])
    except IsolationViolation as exc:
        _say(f"    refused: {exc}")
        return exc.report
    return reports[-1]


def _fine_tune(guard: Guard, tenant: str, records: list[dict[str, object]]) -> CheckReport:
    reports: list[CheckReport] = []

    @guard.sink(
        f"{tenant}-fine-tune", kind="tenant-fine-tune", tenant=tenant, on_report=reports.append
    )
    def build(records: list[dict[str, object]]) -> int:
        return len(records)

    try:
        count = build(records)
        _say(f"    fine-tune set for {tenant} built with {count} records")
    except IsolationViolation as exc:
        _say(f"    refused: {exc}")
        return exc.report
    return reports[-1]
