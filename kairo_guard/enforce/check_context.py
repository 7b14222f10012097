"""What every check of one guard shares (:class:`CheckContext`, built by the assembly),
and the small pieces of a check's decision path that need no check's state."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kairo_guard.core.exceptions import ContentError, IndexLagging
from kairo_guard.core.policy import Decision, Effect, Policy
from kairo_guard.core.seal import SealCodec
from kairo_guard.core.types import AuditAppender, DataClass, Outcome, TenantId
from kairo_guard.detect.accumulation import CheckNet
from kairo_guard.detect.fingerprint import FingerprintCheck, FingerprintIndex
from kairo_guard.enforce.shards import ShardRegistry
from kairo_guard.otel.instrumentation import GuardTelemetry

ContentCheck = Callable[[object], Decision | None]
"""A last check of a record's content before a shared sink: a blocking decision or None."""


@dataclass(frozen=True)
class CheckContext:
    """What every check of one guard shares."""

    codec: SealCodec
    policy: Policy
    audit: AuditAppender
    pseudonym: Callable[[TenantId], str]
    agreement_active: Callable[[TenantId, float], bool]
    clock: Callable[[], float]
    max_violations: int
    fingerprints: FingerprintIndex | None = None
    """Names the owner of unlabeled records at shared sinks."""
    content_checks: tuple[ContentCheck, ...] = ()
    """Run in order on every record about to pass into a shared sink; the first that
    returns a decision (a block) decides. The fingerprint net among them
    (:class:`~kairo_guard.detect.fingerprint.FingerprintCheck`) runs first, on batches."""
    operator_checks: tuple[ContentCheck, ...] | None = None
    """The content checks of a record an allow rule of operator data alone decided
    (its PII policy: structured identifiers, see :mod:`kairo_guard.detect.pii.gate`);
    None: :attr:`content_checks` for every record."""
    telemetry: GuardTelemetry | None = None
    """Where the check's span and metrics go (OpenTelemetry; none without it)."""
    erased: Callable[[], Mapping[str, float]] | None = None
    """Pseudonym -> erasure time of erased tenants, read at each refresh of a check:
    their labels sealed up to that time are refused."""
    index_watermark: Callable[[], None] | None = None
    """Called once when a check at a shared sink starts (and before vetting): returns
    once everything ingestion accepted before the call is indexed, or raises
    :class:`~kairo_guard.core.exceptions.IndexLagging` past its bound; then every
    record of the check blocks (rule ``index.lagging``)."""
    shards: ShardRegistry | None = None
    """Says which records of vetted shards need no content check at a shared sink
    (:meth:`~kairo_guard.enforce.shards.ShardRegistry.clean`); None: every record does."""


def read_erased(ctx: CheckContext) -> Mapping[str, float] | None:
    """Pseudonym -> erasure time of the erased tenants; None if they cannot be read
    (then every tenant's label blocks: fail closed, see ``erased_decision``)."""
    try:
        return {} if ctx.erased is None else ctx.erased()
    except Exception:  # noqa: BLE001 - fail closed: tenant labels block
        return None


def refreshed_shards(shards: ShardRegistry | None) -> ShardRegistry | None:
    """Compare vetted shards with what was indexed since; return them, or None (no
    shards here, or the index cannot be read: every record is then checked in full, so
    the failure blocks there)."""
    if shards is None:
        return None
    try:
        shards.refresh()
    except Exception:  # noqa: BLE001 - fail closed: every record checked in full
        return None
    return shards


def failed_decision(exc: Exception) -> Decision:
    """The block for a record whose decision raised ``exc`` (fail closed)."""
    if isinstance(exc, ContentError):
        return Decision(Outcome.BLOCK, "content.unencodable", str(exc))
    return Decision(Outcome.BLOCK, "guard.error", f"{type(exc).__name__}: {exc}")


def await_index(ctx: CheckContext) -> Decision | None:
    """Wait for the index watermark of a check at a shared sink; return the block for
    every record of the check if the index lags (or the wait fails), else None."""
    if ctx.index_watermark is None:
        return None
    try:
        ctx.index_watermark()
    except IndexLagging as exc:
        return Decision(Outcome.BLOCK, exc.rule, exc.reason)
    except Exception as exc:  # noqa: BLE001 - fail closed: the net cannot be trusted
        reason = f"the index watermark could not be awaited: {type(exc).__name__}: {exc}"
        return Decision(Outcome.BLOCK, IndexLagging.RULE, reason)
    return None


def operator_plan(
    ctx: CheckContext, shared: bool
) -> tuple[frozenset[str], tuple[ContentCheck, ...]]:
    """The ids of the allow rules that admit operator data alone, and the content checks
    (other than the net) for a record one of them decided (none at a private sink)."""
    if not shared or ctx.operator_checks is None:
        return frozenset(), ()
    ids = frozenset(
        r.id for r in ctx.policy.rules
        if r.effect is Effect.ALLOW and r.data_classes == frozenset({DataClass.OPERATOR_PUBLIC})
    )  # fmt: skip
    return ids, tuple(c for c in ctx.operator_checks if not isinstance(c, FingerprintCheck))


def content_plan(
    ctx: CheckContext, shared: bool
) -> tuple[tuple[ContentCheck, ...], CheckNet | None, bool, bool]:
    """Return what a check runs on records' content: the content checks other than the
    fingerprint net, the net (None without one), whether it checks records about to pass
    and whether it names the owner of unlabeled ones (none of it at a private sink)."""
    checks = ctx.content_checks if shared else ()
    nets = [c.index for c in checks if isinstance(c, FingerprintCheck)]
    attribute = shared and ctx.fingerprints is not None
    index = nets[0] if nets else ctx.fingerprints if attribute else None
    others = tuple(c for c in checks if not isinstance(c, FingerprintCheck))
    return others, None if index is None else CheckNet(index), bool(nets), attribute
