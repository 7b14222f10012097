"""A verified tenant dataset at a sink: decided whole, before training starts.

At a ``tenant-fine-tune`` sink (:meth:`DatasetAdmission.check` and
:meth:`DatasetAdmission.admit`, the sink checks' admission for a
:class:`~kairo_guard.tenancy.datasets.VerifiedDataset`) a dataset passes only if, when
training starts, the manifest still verifies, names the sink's tenant, is the current
manifest of a dataset the store knows, and the very agreement it records is still
active; then every record is checked as any record would be (seal, tenant, expiry).
Everything is decided before the training function receives the dataset.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from kairo_guard.core.content import split_sealed_line
from kairo_guard.core.exceptions import IsolationViolation, StoreError
from kairo_guard.core.report import CheckReport
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import Mode, Outcome, SinkKind
from kairo_guard.enforce.check import SinkCheck
from kairo_guard.enforce.service import SinkChecks
from kairo_guard.store.base import Store
from kairo_guard.tenancy.agreements import Agreements
from kairo_guard.tenancy.datasets import VerifiedDataset
from kairo_guard.tenancy.manifest import DatasetError, ManifestSigner, MerkleRoot


class DatasetAdmission:
    """Decides verified datasets at sinks (see the module docstring).

    Args:
        store: knows which datasets and manifests are current.
        signer: verifies manifests.
        agreements: which agreement permits a tenant's fine-tune.
        checks: starts the per-record check of a sink.
    """

    def __init__(
        self, store: Store, signer: ManifestSigner, agreements: Agreements, checks: SinkChecks
    ) -> None:
        self._store = store
        self._signer = signer
        self._agreements = agreements
        self._checks = checks

    def check(self, value: VerifiedDataset, sink: Sink, mode: Mode | None) -> CheckReport:
        """Decide a verified dataset for ``sink``: the report, never raising on blocks."""
        return self._check(value, sink, mode)[1]

    def admit(
        self, value: VerifiedDataset, sink: Sink, report_to: Callable[[CheckReport], None]
    ) -> VerifiedDataset:
        """Return the dataset a training function may receive (all of it, or in
        ``filter`` mode the records that passed).

        Raises:
            IsolationViolation: ``enforce`` mode with any refusal, or a dataset refused
                as a whole in ``filter`` mode (nothing verifiable is left to pass).
        """
        passed, report = self._check(value, sink, None)
        report_to(report)
        if passed is None or (not report.ok and sink.mode is Mode.ENFORCE):
            raise IsolationViolation(report)
        return passed

    def _check(
        self, dataset: VerifiedDataset, sink: Sink, mode: Mode | None
    ) -> tuple[VerifiedDataset | None, CheckReport]:
        run = self._checks.start(sink, mode=mode)
        refused = self._decide(run, dataset)
        report = run.finish()
        if run.mode is Mode.OBSERVE:
            return dataset, report
        if refused is None:
            return None, report
        return dataset.without(refused) if refused else dataset, report

    def _problem(self, dataset: VerifiedDataset, sink: Sink) -> DatasetError | None:
        manifest = dataset.manifest
        if sink.kind is not SinkKind.TENANT_FINE_TUNE:
            return DatasetError(
                "dataset.shared-sink", "a tenant dataset never reaches a shared training sink"
            )
        try:
            self._signer.verify(manifest)
        except DatasetError as exc:
            return exc
        if manifest.tenant != sink.tenant:
            return DatasetError(
                "dataset.tenant-mismatch", "the dataset belongs to another tenant than the sink's"
            )
        try:
            info = self._store.get_dataset(manifest.dataset_id)
        except StoreError as exc:
            return DatasetError("guard.error", f"cannot look the dataset up: {exc}")
        if info is None or info.tenant != manifest.tenant:
            return DatasetError(
                "dataset.unknown", "no such dataset is recorded (deleted or foreign)"
            )
        if info.manifest_digest != manifest.digest:
            return DatasetError(
                "dataset.superseded", "this manifest was replaced (the dataset was pruned)"
            )
        if self._agreements.for_fine_tune(manifest.tenant, manifest.agreement_id) is None:
            return DatasetError(
                "dataset.agreement-inactive",
                "the agreement the dataset was built under is revoked, expired or out of scope",
            )
        return None

    def _decide(self, run: SinkCheck, dataset: VerifiedDataset) -> frozenset[int] | None:
        """Decide a dataset at a sink: None if refused as a whole, else refused positions."""
        problem = self._problem(dataset, run.sink)
        refused: set[int] = set()
        if problem is None:
            tree = MerkleRoot()  # recomputed here: the sink trusts no object, only the manifest
            try:
                for index, line, digest, seal in dataset.verified_lines():
                    tree.add(digest)
                    if index in dataset.skipped:
                        continue
                    content = split_sealed_line(line)
                    body = content[0] if content is not None else orjson.loads(line)
                    decision = run.decide_parts(
                        body, seal, digest.hex(), index, json_bytes=content is not None
                    )
                    if decision.outcome is not Outcome.ALLOW:
                        refused.add(index)
                if tree.hexdigest() != dataset.manifest.merkle_root:
                    problem = DatasetError(
                        "dataset.records-mismatch", "records do not match the manifest"
                    )
            except DatasetError as exc:
                problem = exc
        if problem is not None:
            run.block_unreadable(problem.rule, problem.reason, dataset.manifest.digest, 0)
            return None
        return frozenset(refused)
