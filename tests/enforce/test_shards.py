"""Vetted shards between two roles: a vetting process that holds the Ed25519 signing key
and a training process that holds only its public key (and the HMAC ring that every
process of the deployment shares)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from bad_lines import hmac_permitting_seal
from corpus import prose
from kg_testing import EVERY_TENANT, make_guard

from kairo_guard import Guard, KeyRing, SignerKeys, TelemetryAggregator
from kairo_guard.core.content import content_digest
from kairo_guard.core.exceptions import KeyringError, SealError
from kairo_guard.core.shard import parse_shard_seal, shard_seal
from kairo_guard.core.types import SEAL_FIELD, DataClass
from kairo_guard.detect.accumulation import ACCUMULATED_RULE
from kairo_guard.enforce.shards import ShardRegistry, ShardWriter
from kairo_guard.store.sqlite import DB_FILE_NAME

PUBLIC = prose("shards-public", paragraphs=2)
SHARED = "shared-training"


class Roles(NamedTuple):
    vetter: Guard
    trainer: Guard
    signer: SignerKeys


@pytest.fixture
def roles(tmp_path: Path, ring: KeyRing) -> Iterator[Roles]:
    signer = SignerKeys.generate("s1")
    vetter = make_guard(tmp_path / "vetting", ring=ring, signer=signer, pii_gate=False)
    trainer = make_guard(
        tmp_path / "training",
        ring=ring,
        store=vetter.store,
        signer=None,
        verify_keys=signer.public(),
        pii_gate=False,
    )
    with vetter, trainer:
        yield Roles(vetter, trainer, signer)


def _vetted(guard: Guard, contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seals = guard.vetting.vet(contents, source="docs")
    assert all(isinstance(s, str) for s in seals), seals
    return [{**c, SEAL_FIELD: s} for c, s in zip(contents, seals, strict=True)]


def _rules(guard: Guard, records: list[dict[str, Any]]) -> list[str]:
    report = guard.check(records, sink=SHARED, mode="filter")
    return [v.rule for v in report.violations]


def test_a_process_holding_only_public_keys_cannot_mint_a_permitting_label(roles: Roles) -> None:
    vetter, trainer, _ = roles
    content = {"text": PUBLIC[:400]}
    with pytest.raises(KeyringError, match="no signing key"):
        trainer.seal_operator_data(content, source="docs")
    with pytest.raises(KeyringError, match="no signing key"):
        trainer.vetting.vet([content], source="docs")
    aggregator = TelemetryAggregator(
        trainer.telemetry_vetting,
        audit=trainer.audit,
        pseudonym=trainer.keys.pseudonym,
        tenants=EVERY_TENANT,
        k=2,
    )
    events = [
        {"tenant": t, "route": "/v1/chat", "latency_ms": 10.0, "ts": 1_764_979_200}
        for t in ("acme", "globex", "initech")
    ]
    with pytest.raises(KeyringError, match="no signing key"):
        aggregator.aggregate(events)

    # what the training process could make with what it holds, all refused
    hmac_forgery = {**content, SEAL_FIELD: hmac_permitting_seal(trainer.keys, content)}
    own_key = ShardWriter(
        SignerKeys.generate("s1"),  # its own key, under the trusted key's id
        trainer.store,
        audit=trainer.audit,
        clock=trainer.clock,
        retention=lambda *_: None,
    )
    digest = content_digest(content)
    (own_seal,) = own_key.write(
        DataClass.OPERATOR_PUBLIC, "docs", [digest], [np.empty(0, np.int64)],
        watermark=0, policy=trainer.vetting.policy,
    )  # fmt: skip
    self_signed = {**content, SEAL_FIELD: own_seal}
    genuine = _vetted(vetter, [content])[0]
    report = trainer.check([hmac_forgery, self_signed, genuine], sink=SHARED, mode="filter")
    assert [(v.index, v.rule) for v in report.violations] == [
        (0, "seal.invalid"),
        (1, "seal.invalid"),
    ]
    assert "vetting role" in report.violations[0].reason
    assert "does not verify" in report.violations[1].reason
    assert report.allowed == 1


def test_a_record_changed_or_given_anothers_digest_does_not_pass(roles: Roles) -> None:
    vetter, trainer, _ = roles
    a, b = _vetted(vetter, [{"text": PUBLIC[:300]}, {"text": PUBLIC[300:600]}])
    shard, _ = parse_shard_seal(a[SEAL_FIELD])
    changed = {**a, "text": a["text"] + " (edited)"}
    stranger = {"text": "not in the shard", SEAL_FIELD: shard_seal(shard, content_digest("x"))}
    swapped = {**b, SEAL_FIELD: a[SEAL_FIELD]}
    report = trainer.check([a, b, changed, stranger, swapped], sink=SHARED, mode="filter")
    assert [(v.index, v.rule) for v in report.violations] == [
        (2, "seal.digest-mismatch"),
        (3, "seal.invalid"),
        (4, "seal.digest-mismatch"),
    ]
    assert "not one of its shard's" in report.violations[1].reason


@pytest.mark.sqlite_only
@pytest.mark.parametrize("column", ["digests", "fingerprints", "manifest"])
def test_a_shard_altered_in_the_store_is_refused(
    roles: Roles, tmp_path: Path, ring: KeyRing, column: str
) -> None:
    vetter, _, signer = roles
    record = _vetted(vetter, [{"text": PUBLIC[:300]}])[0]
    shard, _ = parse_shard_seal(record[SEAL_FIELD])
    replacement = {
        "digests": bytes(32),  # one record, another digest: the root no longer matches
        "fingerprints": (1).to_bytes(8, "little") + bytes(12),  # a fingerprint more
        "manifest": b"{}",
    }[column]
    with sqlite3.connect(tmp_path / "vetting" / DB_FILE_NAME) as db:
        db.execute(f"UPDATE shards SET {column} = ? WHERE id = ?", (replacement, shard))
    with make_guard(
        tmp_path / "fresh", ring=ring, store=vetter.store, signer=None,
        verify_keys=signer.public(), pii_gate=False,
    ) as fresh:  # fmt: skip
        assert _rules(fresh, [record]) == ["seal.invalid"]


def test_a_vetted_record_is_checked_again_only_against_what_was_indexed_after_it(
    roles: Roles,
) -> None:
    vetter, trainer, _ = roles
    later = prose("shards-customer", paragraphs=3)
    public = {"text": f"{PUBLIC[:300]} {later[:400]}"}  # holds what acme uploads later
    other = {"text": PUBLIC[300:700]}
    records = _vetted(vetter, [public, other])
    label, _ = trainer.shards.verify(records[0][SEAL_FIELD])
    assert _rules(trainer, records) == []
    assert trainer.shards.clean(label, content_digest(public))  # no content check needed

    vetter.index_content("acme", {"text": later})  # acme's upload, after the vetting
    vetter.index_content("globex", {"text": prose("shards-unrelated", paragraphs=2)})
    assert _rules(trainer, records) == ["fingerprint.tenant-content"]
    assert not trainer.shards.clean(label, content_digest(public))
    assert trainer.shards.clean(label, content_digest(other))  # unrelated upload: still clean


def test_a_customer_identifier_indexed_after_vetting_blocks_the_vetted_record(
    roles: Roles,
) -> None:
    vetter, trainer, _ = roles
    records = _vetted(vetter, [{"text": "Questions go to jane.roe@example.org, says the FAQ."}])
    assert _rules(trainer, records) == []
    vetter.index_content("acme", {"text": "From: jane.roe@example.org. Our board met."})
    assert _rules(trainer, records) == ["pii.customer-identifier"]


def test_a_shard_vetted_under_another_policy_is_checked_in_full(roles: Roles) -> None:
    vetter, trainer, signer = roles
    (record,) = _vetted(vetter, [{"text": PUBLIC[:300]}])
    digest = content_digest({"text": PUBLIC[:300]})
    registry = ShardRegistry(
        trainer.store, signer.public(), {DataClass.OPERATOR_PUBLIC: "f" * 64}, trainer.store
    )
    label, found = registry.verify(record[SEAL_FIELD])
    assert found == digest
    assert label.data_class is DataClass.OPERATOR_PUBLIC
    assert not registry.clean(label, digest)
    assert trainer.shards.clean(*trainer.shards.verify(record[SEAL_FIELD]))


def test_pieces_of_one_document_vetted_together_are_refused_together(roles: Roles) -> None:
    vetter, _, _ = roles
    doc = prose("shards-accumulated", paragraphs=4)
    filler = prose("shards-filler", paragraphs=3)
    vetter.fingerprints.add("acme", doc)
    index = vetter.fingerprints
    for start in range(0, len(doc) - 300, 10):
        cut = [doc[start + 100 * i : start + 100 * (i + 1)] for i in range(3)]
        pieces = [{"text": f"{filler[500 * i : 500 * i + 250]} {c}"} for i, c in enumerate(cut)]
        found = index.evidence([index.fingerprints_of(p) for p in pieces])
        if all(1 <= len(e.shared.get("acme", ())) < index.min_shared for e in found):
            break
    else:
        raise AssertionError("no span of the document cuts into sub-threshold pieces")
    alone = [vetter.vetting.vet([p], source="docs")[0] for p in pieces]
    assert all(isinstance(s, str) for s in alone)  # each passes on its own
    together = vetter.vetting.vet([{"text": filler[:200]}, *pieces], source="docs")
    assert isinstance(together[0], str)
    assert [getattr(o, "rule", None) for o in together[1:]] == [ACCUMULATED_RULE] * 3


def test_a_registry_holds_a_bounded_number_of_shards_and_reloads_the_rest(
    roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kairo_guard.enforce import shards

    monkeypatch.setattr(shards, "MAX_CACHED_SHARDS", 2)
    vetter, trainer, _ = roles
    records = [_vetted(vetter, [{"text": f"{PUBLIC[:200]} part {i}"}])[0] for i in range(3)]
    for _ in range(2):  # the third load drops the first; the second round loads it again
        assert _rules(trainer, records) == []
        assert len(trainer.shards._shards) <= 2
    label, digest = trainer.shards.verify(records[0][SEAL_FIELD])
    assert trainer.shards.clean(label, digest)


def test_the_vetting_policy_version_follows_the_settings_that_decide_refusals(
    tmp_path: Path,
) -> None:
    from kairo_guard.assembly import vetting_policies
    from kairo_guard.config import load_settings

    homes = iter(range(100))

    def policies(toml: str) -> dict[DataClass, str]:
        home = tmp_path / f"h{next(homes)}"
        home.mkdir()
        (home / "kairo-guard.toml").write_text(toml)
        return vetting_policies(load_settings(home=home, env={}), True, True)

    base = policies("")
    assert base == policies("")  # stable
    assert base[DataClass.OPERATOR_PUBLIC] != base[DataClass.ANONYMIZED_TELEMETRY]
    for toml in ('[pii]\nallow_list = ["help@example.org"]\n', "[fingerprints]\nmin_shared = 7\n"):
        changed = policies(toml)
        assert changed[DataClass.OPERATOR_PUBLIC] != base[DataClass.OPERATOR_PUBLIC], toml


def test_shards_vetted_at_different_positions_each_see_what_came_after_them(
    roles: Roles,
) -> None:
    vetter, trainer, _ = roles
    early, late = prose("shards-early", paragraphs=2), prose("shards-late", paragraphs=2)
    (first,) = _vetted(vetter, [{"text": f"{PUBLIC[:200]} {early[:400]}"}])
    vetter.index_content("acme", {"text": early})  # after the first shard, before the second
    (second,) = _vetted(vetter, [{"text": f"{PUBLIC[200:400]} {late[:400]}"}])
    assert _rules(trainer, [first, second]) == ["fingerprint.tenant-content"]
    vetter.index_content("globex", {"text": late})
    assert _rules(trainer, [first, second]) == ["fingerprint.tenant-content"] * 2


def test_a_mangled_shard_seal_is_refused_as_a_seal_error_never_opened(roles: Roles) -> None:
    vetter, trainer, _ = roles
    record = _vetted(vetter, [{"text": PUBLIC[:120]}])[0]
    genuine = record[SEAL_FIELD]
    assert trainer.codec.verify(genuine)[1] == content_digest({"text": PUBLIC[:120]})
    rng = random.Random(14)
    alphabet = "0123456789abcdefkp.~%-_Z\u00e9\x00"
    for _ in range(3000):
        at, cut = rng.randrange(len(genuine) + 1), rng.randrange(4)
        insert = "".join(rng.choice(alphabet) for _ in range(rng.randrange(5)))
        mangled = genuine[:at] + insert + genuine[at + cut :]
        if mangled == genuine:
            continue
        with pytest.raises(SealError):
            trainer.codec.verify(mangled)
    assert _rules(trainer, [record]) == []  # the genuine one still opens


def test_the_vetting_policy_version_follows_the_default_entity_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kairo_guard.assembly import vetting_policies
    from kairo_guard.config import load_settings
    from kairo_guard.detect.pii import gate

    settings = load_settings(home=tmp_path, env={})
    before = vetting_policies(settings, True, True)
    monkeypatch.setattr(gate, "OPERATOR_ENTITIES", (*gate.OPERATOR_ENTITIES, "EMAIL_ADDRESS"))
    after = vetting_policies(settings, True, True)
    assert after[DataClass.OPERATOR_PUBLIC] != before[DataClass.OPERATOR_PUBLIC]
    assert after[DataClass.ANONYMIZED_TELEMETRY] == before[DataClass.ANONYMIZED_TELEMETRY]
