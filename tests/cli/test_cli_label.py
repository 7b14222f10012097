"""``kairo-guard label``: sealing a backfill, and what it refuses to seal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_support import ACME, DOCS, load, read_jsonl, write_jsonl

from kairo_guard import KeyRing, SealCodec, content_digest
from kairo_guard.core.types import DataClass


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--class", "anonymized_telemetry"], "cannot label as anonymized_telemetry"),
        (["--class", "operator_public", "--tenant", "acme"], "belongs to no tenant"),
    ],
)
def test_when_label_is_asked_for_what_it_cannot_mint_then_exit_2(
    args: list[str], message: str, kg: Any, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "docs.jsonl", DOCS)

    result = kg("label", "docs.jsonl", *args, "--out", "out.jsonl")

    assert result.code == 2
    assert message in result.err
    assert not (tmp_path / "out.jsonl").exists()


LONG_DOC = (
    "Acme confidential roadmap: the Lisbon plant doubles its widget output in the third "
    "quarter, the Porto warehouse closes in October, and forty engineers move to the new "
    "battery line under a supplier agreement that nobody outside the board has seen yet."
)


def test_label_operator_public_refuses_a_tenants_text_and_seals_the_rest(
    kg: Any, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "acme.jsonl", [{"doc": "roadmap", "text": LONG_DOC}])
    sealed = kg("label", "acme.jsonl", "--tenant", "acme", "--class", "customer_content",
                "--out", "acme.sealed.jsonl", "--report", "acme.report.json")  # fmt: skip
    assert sealed.code == 0
    assert load(tmp_path / "acme.report.json")["fingerprints_indexed"] > 0
    laundered = {"text": "Public notes. " + LONG_DOC.upper().replace(",", ";") + " The end."}
    public = {"text": "The quick brown fox jumps over the lazy dog, as every typist knows well."}
    write_jsonl(tmp_path / "ops.jsonl", [public, laundered])

    result = kg("label", "ops.jsonl", "--class", "operator_public", "--out", "ops.sealed.jsonl",
                "--report", "ops.report.json")  # fmt: skip

    assert result.code == 1
    report = load(tmp_path / "ops.report.json")
    assert [(r["line"], r["rule"]) for r in report["refusals"]] == [
        (2, "fingerprint.tenant-content")
    ]
    assert "LISBON" not in json.dumps(report).upper()
    assert kg("scan", "ops.sealed.jsonl", "--sink", "shared-training").code == 0


def test_when_label_has_no_tenant_for_customer_content_then_exit_2(kg: Any, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "docs.jsonl", DOCS)

    result = kg("label", "docs.jsonl", "--class", "customer_content", "--out", "out.jsonl")

    assert result.code == 2
    assert "--tenant is required" in result.err


def test_when_label_tenant_is_not_a_valid_id_then_exit_2(kg: Any, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "docs.jsonl", DOCS)

    result = kg(
        "label",
        "docs.jsonl",
        "--tenant",
        "not a tenant!",
        "--class",
        "customer_content",
        "--out",
        "out.jsonl",
    )

    assert result.code == 2
    assert "tenant" in result.err


def test_when_a_line_is_already_sealed_then_label_refuses_it_and_reports_it(
    kg: Any, acme_sealed: Path, tmp_path: Path
) -> None:
    already = acme_sealed.read_text().splitlines()[0]
    path = tmp_path / "mixed.jsonl"
    path.write_text(f'{{"id": 1}}\n{already}\n{{"id": 3}}\n')

    result = kg(
        "label",
        path,
        "--tenant",
        "globex",
        "--class",
        "customer_content",
        "--out",
        "out.jsonl",
        "--report",
        "report.json",
    )

    assert result.code == 1
    report = load(tmp_path / "report.json")
    assert [(r["line"], r["rule"]) for r in report["refusals"]] == [(2, "label.already-sealed")]
    assert (report["sealed"], report["refused"]) == (2, 1)
    assert "line 2: label.already-sealed" in result.err
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [1, 3]


def test_when_records_are_labelled_then_output_is_the_input_plus_a_seal(
    kg: Any, ring: KeyRing, tmp_path: Path
) -> None:
    lines = [
        '{"z": 1, "a": {"nested": [1, 2.5, -3, null, true, false, {}]}, "m": []}',
        '{"text": "naïve café ☕ \\u00e9 \\ud83d\\ude00", "score": 0.1, "tiny": 1e-7}',
        '{"big": 9223372036854775807, "neg": -9223372036854775808, "huge": 1.5e300}',
        '{"empty": "", "esc": "tab\\tquote\\"nl\\n", "u": "\\u0000"}',
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")

    result = kg("label", "in.jsonl", *ACME, "--source", "crm-backfill", "--out", "out.jsonl")

    assert result.code == 0
    out = read_jsonl(tmp_path / "out.jsonl")
    codec = SealCodec(ring)
    for line, record in zip(lines, out, strict=True):
        seal = record.pop("_kairo")
        assert record == json.loads(line)
        label = codec.open(seal)
        assert (label.tenant, label.data_class, label.source) == (
            "acme",
            DataClass.CUSTOMER_CONTENT,
            "crm-backfill",
        )
        assert label.digest == content_digest(record)


@pytest.mark.sqlite_only
def test_when_customer_content_is_labelled_then_each_record_is_indexed_once(
    kg: Any, tmp_path: Path, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kairo_guard.store.sqlite import SQLiteStore

    writes: list[int] = []
    real = SQLiteStore.add_fingerprints

    def counting(self: SQLiteStore, tenant: str, fingerprints: Any) -> None:
        writes.append(1)
        real(self, tenant, fingerprints)

    monkeypatch.setattr(SQLiteStore, "add_fingerprints", counting)
    docs = [{"n": i, "text": f"{LONG_DOC} Copy {i} of the plan."} for i in range(3)]
    write_jsonl(tmp_path / "acme.jsonl", docs)

    result = kg("label", "acme.jsonl", "--tenant", "acme", "--class", "customer_content",
                "--out", "acme.sealed.jsonl", "--report", "acme.report.json")  # fmt: skip

    assert result.code == 0
    assert len(writes) == 3  # one index write a record: sealing indexes, nothing else does
    report = load(tmp_path / "acme.report.json")
    audit = Path(cli_env["KAIRO_GUARD_HOME"]) / "audit" / "audit.jsonl"
    counts = [
        json.loads(line)["count"]
        for line in audit.read_text().splitlines()
        if json.loads(line).get("event") == "fingerprints.index"
    ]
    assert len(counts) == 3
    assert report["fingerprints_indexed"] == sum(counts) > 0


def test_when_the_index_lags_then_label_vouches_for_no_operator_record(
    kg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kairo_guard.core.exceptions import IndexLagging
    from kairo_guard.enforce.vetting import ShardVetting

    def lagging(self: ShardVetting, contents: Any, *, source: str) -> list[Any]:
        raise IndexLagging("the fingerprint index is behind ingestion by 4096 bytes")

    monkeypatch.setattr(ShardVetting, "vet", lagging)
    write_jsonl(tmp_path / "ops.jsonl", [{"text": "public one"}, {"text": "public two"}])
    result = kg("label", "ops.jsonl", "--class", "operator_public", "--out", "ops.kp.jsonl",
                "--report", "report.json")  # fmt: skip
    assert result.code == 1
    report = load(tmp_path / "report.json")
    assert [(r["line"], r["rule"]) for r in report["refusals"]] == [
        (1, "index.lagging"),
        (2, "index.lagging"),
    ]
    assert (tmp_path / "ops.kp.jsonl").read_bytes() == b""
