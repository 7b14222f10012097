"""Guards in worker processes: a spec crosses, a live guard does not; spawned workers
open their own; a forked child cannot use the parent's and writes none of its audit
entries."""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kg_testing import make_guard, sealed_record
from worker_tasks import check_in_worker, use_inherited

from kairo_guard import Guard, IsolationViolation, KeyRing, KeyringError, SignerKeys
from kairo_guard.audit.verify import verify_audit
from kairo_guard.core.keys import PURPOSE_AUDIT_HEAD


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Guard, list[dict[str, Any]]]]:
    ring = KeyRing(  # a rotated ring: pseudonyms (and fingerprints) keyed by the old key
        keys={**KeyRing.generate("k1").keys, **KeyRing.generate("k2").keys},
        signing_key_id="k2",
        pseudonym_key_id="k1",
    )
    signer = SignerKeys.generate("s1")
    with make_guard(tmp_path / "state", ring=ring, signer=signer, pii_gate=False) as guard:
        records = [
            sealed_record(guard, {"text": "public note"}, data_class="operator_public"),
            guard.label_record({"text": "acme's plan"}, tenant="acme"),
            {"text": "no seal"},
        ]
        yield guard, records


def test_a_guard_does_not_pickle_and_its_spec_carries_no_signing_key(
    served: tuple[Guard, list[dict[str, Any]]],
) -> None:
    guard, _ = served
    with pytest.raises(TypeError, match=r"guard\.spec\(\)"):
        pickle.dumps(guard)
    spec = guard.spec()
    data = pickle.dumps(spec)
    assert pickle.loads(data) == spec
    assert b"signer" not in data
    assert spec.verify_keys  # the public key, to verify shards with
    worker = Guard.from_spec(spec)
    assert worker.keys.pseudonym("acme") == guard.keys.pseudonym("acme")
    assert not worker.vetting.writer.can_sign
    worker.close()
    again = Guard.from_spec(spec)
    assert again is not worker  # a closed guard is not handed out again
    again.close()


def test_a_worker_never_vouches_even_where_the_state_directory_holds_the_signing_key(
    tmp_path: Path,
) -> None:
    with make_guard(tmp_path / "keys-init", pii_gate=False) as guard:  # signer.json in home
        assert (tmp_path / "keys-init" / "signer.json").exists()
        assert guard.vetting.writer.can_sign  # the vetting role's own process
        worker = Guard.from_spec(guard.spec())
        try:
            assert not worker.vetting.writer.can_sign  # it read signer.json before
            with pytest.raises(KeyringError):
                worker.seal_operator_data({"text": "a note"}, source="docs")
        finally:
            worker.close()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_workers_open_their_own_guard_and_check_records(
    served: tuple[Guard, list[dict[str, Any]]], method: str
) -> None:
    guard, records = served
    guard.audit.flush()
    context = multiprocessing.get_context(method)
    with context.Pool(2) as pool:
        results = pool.starmap(check_in_worker, [(guard.spec(), records)] * 4)
    for result in results:
        assert result["allowed"] == 1
        assert result["rules"] == ["class.customer-content-shared", "seal.missing"]
        assert not result["signs"]
    guard.audit.flush()
    verified = verify_audit(
        Path(guard.settings.home) / "audit", guard.keys.subkeys(PURPOSE_AUDIT_HEAD)
    )
    assert verified.ok, verified.problem


def test_a_forked_child_cannot_use_the_parents_guard_and_writes_none_of_its_entries(
    served: tuple[Guard, list[dict[str, Any]]],
) -> None:
    guard, records = served
    report = guard.check(records, sink="shared-training", mode="filter")  # buffered, unwritten
    child = multiprocessing.get_context("fork").Process(
        target=use_inherited, args=(guard, guard.spec(), records)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    guard.audit.flush()
    verified = verify_audit(
        Path(guard.settings.home) / "audit", guard.keys.subkeys(PURPOSE_AUDIT_HEAD)
    )
    assert verified.ok, verified.problem
    lines = (Path(guard.settings.home) / "audit" / "audit.jsonl").read_text().splitlines()
    assert (
        sum(f'"check":"{report.check_id}"' in line and '"event":"check"' in line for line in lines)
        == 1
    )


def test_an_isolation_violation_crosses_processes_with_its_report(guard: Guard) -> None:
    """A worker's refusal pickles whole (multiprocessing pools send errors this way)."""
    report = guard.check([{"text": "no seal"}], sink="shared-training")
    error = pickle.loads(pickle.dumps(IsolationViolation(report)))
    assert isinstance(error, IsolationViolation)
    assert error.report == report
    assert "refused 1 of 1" in str(error)
