"""The signed Bloom-filter export of the fingerprint index."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kairo_guard import Guard
from kairo_guard.cli.main import main
from kairo_guard.detect.bloom import FilterError, FingerprintFilter

DOC = (
    "Quarterly forecast for the northern region: revenue from the turbine service "
    "contracts rises eleven percent, the Gdansk depot absorbs the Szczecin routes, and "
    "the maintenance crews move to a four-day rota starting in the second week of May."
)


def test_exported_filter_finds_every_excerpt_the_store_finds(guard: Guard, tmp_path: Path) -> None:
    guard.index_content("acme", {"text": DOC})
    path = tmp_path / "filter.kgb"
    assert guard.export_fingerprint_filter(path) > 0
    flt = guard.load_fingerprint_filter(path)
    excerpt = {"note": "see: " + DOC[10:230].upper()}
    assert guard.fingerprints.overlap(excerpt) is not None
    found = flt.overlap(excerpt, guard.fingerprints.fingerprinter)
    assert found is not None
    assert found.shared >= 3
    unrelated = {"text": "An entirely different paragraph about gardening, compost heaps and the "
                 "best season for planting tulip bulbs in sandy soil near the coast."}  # fmt: skip
    assert flt.overlap(unrelated, guard.fingerprints.fingerprinter) is None


def test_false_positive_rate_per_fingerprint_is_near_the_stated_rate() -> None:
    rng = random.Random(7)
    members = [rng.getrandbits(64) - 2**63 for _ in range(20_000)]
    flt = FingerprintFilter.build(members, count=len(members), fp_rate=0.01)
    assert flt.contains(members) == len(members)  # no false negatives
    others = [rng.getrandbits(64) - 2**63 for _ in range(100_000)]
    rate = flt.contains(others) / len(others)
    assert rate <= 0.015


def test_boilerplate_fingerprints_are_left_out_of_the_export(guard: Guard, tmp_path: Path) -> None:
    for tenant in ("t1", "t2", "t3", "t4", "t5"):
        guard.index_content(tenant, {"text": DOC})
    assert guard.export_fingerprint_filter(tmp_path / "f.kgb") == 0
    guard.index_content("acme", {"text": DOC[::-1]})
    assert guard.export_fingerprint_filter(tmp_path / "f.kgb") > 0


@pytest.mark.parametrize("damage", ["flip-bit", "edit-header", "truncate"])
def test_an_altered_filter_is_refused(guard: Guard, tmp_path: Path, damage: str) -> None:
    guard.index_content("acme", {"text": DOC})
    path = tmp_path / "f.kgb"
    guard.export_fingerprint_filter(path)
    data = bytearray(path.read_bytes())
    if damage == "flip-bit":
        data[-1] ^= 1
    elif damage == "edit-header":
        data = bytearray(bytes(data).replace(b'"min_shared":3', b'"min_shared":9'))
    else:
        data = data[:-1]
    path.write_bytes(bytes(data))
    with pytest.raises(FilterError):
        guard.load_fingerprint_filter(path)


def test_a_filter_from_another_key_is_refused(tmp_path: Path) -> None:
    from kg_testing import make_guard

    with make_guard(tmp_path / "a") as a, make_guard(tmp_path / "b") as b:
        a.index_content("acme", {"text": DOC})
        a.export_fingerprint_filter(tmp_path / "f.kgb")
        with pytest.raises(FilterError, match="does not verify"):
            b.load_fingerprint_filter(tmp_path / "f.kgb")


def test_cli_exports_and_deletes(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "docs.jsonl").write_text('{"text": "' + DOC + '"}\n')
    assert main(["label", "docs.jsonl", "--tenant", "acme", "--class", "customer_content",
                 "--out", "sealed.jsonl"]) == 0  # fmt: skip
    assert main(["fingerprints", "export", "--out", "f.kgb"]) == 0
    assert (tmp_path / "f.kgb").stat().st_size > 0
    assert main(["fingerprints", "delete", "acme"]) == 0
    (tmp_path / "ops.jsonl").write_text('{"text": "copy: ' + DOC + '"}\n')
    assert main(["label", "ops.jsonl", "--class", "operator_public", "--out", "o.jsonl"]) == 0


def test_deleting_a_tenants_fingerprints_from_python_is_audited(tmp_path: Path) -> None:
    import json

    from kg_testing import make_guard

    with make_guard(tmp_path / "s") as g:
        g.index_content("acme", {"text": DOC})
        rows = g.fingerprints.delete("acme")
        g.audit.flush()
        pseudonym = g.keys.pseudonym("acme")
    assert rows > 0
    log = (tmp_path / "s" / "audit" / "audit.jsonl").read_text()
    [entry] = [e for e in map(json.loads, log.splitlines()) if e["event"] == "fingerprints.delete"]
    assert (entry["tenant"], entry["rows"]) == (pseudonym, rows)
    assert "acme" not in log
