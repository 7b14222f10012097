"""Review: the Guard methods users of the pre-refactor API call (some named in its README)
still work, delegating to the services that now hold them."""

from __future__ import annotations

from pathlib import Path

from kairo_guard import Guard
from kairo_guard.core.content import content_digest
from kairo_guard.core.types import SEAL_FIELD


def test_when_old_guard_methods_are_called_then_they_still_work(
    guard: Guard, tmp_path: Path
) -> None:
    assert guard.agreement_active("acme") is False
    guard.grant_agreement("acme")
    assert guard.agreement_active("acme") is True

    records = [guard.label_record({"text": f"acme doc {i}"}, tenant="acme") for i in range(3)]
    builder = guard.tenant_dataset("acme")
    builder.add_all(records)
    manifest = builder.write(tmp_path / "ds")
    dataset = guard.open_dataset(tmp_path / "ds")
    assert guard.check_dataset(dataset, sink="tenant-fine-tune:acme").ok
    assert guard.prune_dataset(manifest.dataset_id, lambda label: True, reason="test") == (3, 0)

    run = guard.start_check("tenant-fine-tune:acme")
    run.decide(records[0])
    assert run.finish().allowed == 1

    seal = guard.seal_digest(content_digest({"text": "streamed"}), tenant="acme")
    assert guard.open_seal(seal).tenant == "acme"
    guard.record_provenance(records[0][SEAL_FIELD])

    guard.register_model("acme-m1", dataset=manifest, owner="acme")
    assert guard.mark_models_for_deletion("acme") == 1
    assert guard.delete_datasets("acme") == 1
