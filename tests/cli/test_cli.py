"""The ``kairo-guard`` commands: keys, label, scan and its modes, agreements, audit, config.

Exit codes are a contract: 0 all allowed / all good; 1 a violation found or an integrity
check failed; 2 bad usage, bad config, unreadable input.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from kg_testing import make_guard, sealed_record

from kairo_guard import KeyRing, SealCodec, SealError, content_digest
from kairo_guard.cli.main import main
from kairo_guard.core.content import sealed_line
from kairo_guard.core.keys import read_key_file
from kairo_guard.core.types import DataClass

SCRIPT = Path(sys.executable).parent / "kairo-guard"
ACME = ("--tenant", "acme", "--class", "customer_content")


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def where(report: dict[str, Any]) -> list[tuple[int, str]]:
    return [(v["line"], v["rule"]) for v in report["violations"]]


def operator_lines(home: Path, ring: KeyRing, records: list[dict[str, Any]]) -> list[bytes]:
    """operator_public records minted with the CLI's key, as JSONL lines."""
    with make_guard(home, ring=ring) as guard:
        return [
            orjson.dumps(sealed_record(guard, r, data_class="operator_public")) for r in records
        ]


DOCS = [
    {"doc": "contract-17", "text": "Acme supply agreement: 40,000 units at $3.10."},
    {"doc": "memo-3", "text": "Acme Q3 plan: expand the Lisbon plant."},
    {"doc": "ticket-9", "text": "Réclamation client: livraison en retard 🚚"},
]


@pytest.fixture
def acme_sealed(kg: Any, tmp_path: Path) -> Path:
    """acme's documents, labelled as acme's customer content by ``kairo-guard label``."""
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    assert kg("label", "docs.jsonl", *ACME, "--out", "acme.jsonl").code == 0
    return tmp_path / "acme.jsonl"


# -- keys ----------------------------------------------------------------------------


def test_when_keys_init_then_key_file_is_private_and_the_guard_uses_it(
    kg: Any, home: Path, ring: KeyRing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAIRO_GUARD_KEY")

    result = kg("keys", "init")

    assert result.code == 0
    key_file = home / "keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert str(key_file) in result.out
    write_jsonl(tmp_path / "docs.jsonl", DOCS[:1])
    assert kg("label", "docs.jsonl", *ACME, "--out", "acme.jsonl").code == 0
    (record,) = read_jsonl(tmp_path / "acme.jsonl")
    assert SealCodec(read_key_file(key_file)).open(record["_kairo"]).tenant == "acme"
    assert kg("agreements", "grant", "acme").code == 0
    assert kg("scan", "acme.jsonl", "--sink", "tenant-fine-tune:acme").code == 0
    # The seal is the key file's: the fixture's ring (same key id) cannot open it.
    with pytest.raises(SealError):
        SealCodec(ring).open(record["_kairo"])


def test_when_keys_init_runs_again_then_it_refuses_and_keeps_the_file(
    kg: Any, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAIRO_GUARD_KEY")
    assert kg("keys", "init").code == 0
    before = (home / "keys.json").read_bytes()

    result = kg("keys", "init", "--key-id", "k2")

    assert result.code == 2
    assert "refusing to overwrite" in result.err
    assert (home / "keys.json").read_bytes() == before


def test_when_keys_rotate_then_a_new_key_signs_and_old_seals_still_verify(
    kg: Any, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAIRO_GUARD_KEY")
    assert kg("keys", "init").code == 0
    old_ring = read_key_file(home / "keys.json")
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    label = ("label", "docs.jsonl", "--tenant", "acme", "--class", "customer_content", "--out")
    assert kg(*label, "old.jsonl").code == 0

    assert kg("keys", "rotate", "--key-id", "k2").code == 0

    new_ring = read_key_file(home / "keys.json")
    assert stat.S_IMODE((home / "keys.json").stat().st_mode) == 0o600
    assert new_ring.signing_key_id == "k2"
    assert new_ring.keys["k1"] == old_ring.keys["k1"]
    assert kg(*label, "new.jsonl").code == 0
    assert {r["_kairo"].split(".")[1] for r in read_jsonl(tmp_path / "old.jsonl")} == {"k1"}
    assert {r["_kairo"].split(".")[1] for r in read_jsonl(tmp_path / "new.jsonl")} == {"k2"}
    both = tmp_path / "both.jsonl"
    both.write_bytes((tmp_path / "old.jsonl").read_bytes() + (tmp_path / "new.jsonl").read_bytes())
    assert kg("agreements", "grant", "acme").code == 0
    scan = kg("scan", both, "--sink", "tenant-fine-tune:acme", "--report", "r.json")
    assert scan.code == 0
    assert load(tmp_path / "r.json")["allowed"] == 2 * len(DOCS)
    assert kg("keys", "rotate", "--key-id", "k2").code == 2


# -- label then scan -----------------------------------------------------------------


def test_when_labelled_customer_content_is_scanned_for_shared_training_then_it_is_blocked(
    kg: Any, acme_sealed: Path, tmp_path: Path
) -> None:
    result = kg("scan", acme_sealed, "--sink", "shared-training", "--report", "report.json")

    assert result.code == 1
    report = load(tmp_path / "report.json")
    assert {"sink", "total", "allowed", "blocked", "by_rule", "violations"} <= report.keys()
    assert (report["sink"], report["total"], report["allowed"], report["blocked"]) == (
        "shared-training",
        3,
        0,
        3,
    )
    assert report["by_rule"] == {"class.customer-content-shared": 3}
    assert where(report) == [(n, "class.customer-content-shared") for n in (1, 2, 3)]
    assert all("customer content" in v["reason"] for v in report["violations"])
    assert "blocked" in result.out


def test_when_agreements_change_then_tenant_fine_tune_follows_them(
    kg: Any, acme_sealed: Path, tmp_path: Path
) -> None:
    def scan(sink: str) -> tuple[int, dict[str, int]]:
        code = kg("scan", acme_sealed, "--sink", sink, "--report", "r.json").code
        return code, load(tmp_path / "r.json")["by_rule"]

    assert scan("tenant-fine-tune:acme") == (1, {"agreement.inactive": 3})
    assert kg("agreements", "grant", "acme").code == 0
    assert scan("tenant-fine-tune:acme") == (0, {"allow.tenant-own-content": 3})
    assert scan("shared-fine-tune") == (1, {"class.customer-content-shared": 3})
    assert kg("agreements", "grant", "globex").code == 0
    assert scan("tenant-fine-tune:globex") == (1, {"tenant.cross-tenant": 3})
    revoked = kg("agreements", "revoke", "acme")
    assert revoked.code == 0
    assert "revoked 1" in revoked.out
    assert scan("tenant-fine-tune:acme") == (1, {"agreement.inactive": 3})


def test_when_an_agreement_scope_excludes_fine_tuning_then_fine_tune_stays_blocked(
    kg: Any, acme_sealed: Path, tmp_path: Path
) -> None:
    assert kg("agreements", "grant", "acme", "--scope", "evaluation").code == 0
    listed = kg("agreements", "list", "--json")
    assert '"scope":"evaluation"' in listed.out
    code = kg("scan", acme_sealed, "--sink", "tenant-fine-tune:acme").code
    assert code == 1
    assert kg("agreements", "grant", "acme", "--scope", "evaluation,fine-tune").code == 0
    assert kg("scan", acme_sealed, "--sink", "tenant-fine-tune:acme").code == 0
    bad = kg("agreements", "grant", "acme", "--scope", "Fine Tune; drop")
    assert bad.code == 2
    assert "invalid agreement scope" in bad.err


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


# -- scan modes ----------------------------------------------------------------------


@pytest.fixture
def mixed(home: Path, ring: KeyRing, tmp_path: Path) -> tuple[Path, list[bytes], list[bool]]:
    """Operator data (written in unusual but valid JSON) mixed with refused lines."""
    with make_guard(home, ring=ring) as guard:
        ops = [
            sealed_record(guard, {"id": i, "text": f"public {i} ü"}, data_class="operator_public")
            for i in range(3)
        ]
        customer = guard.label_record({"id": 9, "text": "acme secret"}, tenant="acme")
    lines = [
        json.dumps(ops[0], ensure_ascii=False, separators=(" , ", " : ")).encode(),
        orjson.dumps(customer),
        json.dumps({"_kairo": ops[1]["_kairo"], "text": ops[1]["text"], "id": 1}).encode(),
        b'{"broken": ',
        json.dumps(ops[2], indent=None).encode() + b"   \t",
    ]
    allowed = [True, False, True, False, True]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path, lines, allowed


def test_when_filter_mode_then_out_holds_exactly_the_allowed_records_in_canonical_form(
    kg: Any, mixed: tuple[Path, list[bytes], list[bool]], tmp_path: Path
) -> None:
    path, lines, allowed = mixed

    result = kg(
        "scan",
        path,
        "--sink",
        "shared-training",
        "--mode",
        "filter",
        "--out",
        "out.jsonl",
        "--report",
        "report.json",
    )

    assert result.code == 1
    # what was verified is what is written: lines in another form are re-encoded
    expected = b""
    for line, ok in zip(lines, allowed, strict=True):
        if ok:
            value = orjson.loads(line)
            expected += sealed_line(value, value.pop("_kairo"))
    assert (tmp_path / "out.jsonl").read_bytes() == expected
    report = load(tmp_path / "report.json")
    assert (report["mode"], report["allowed"], report["blocked"]) == ("filter", 3, 2)
    assert where(report) == [(2, "class.customer-content-shared"), (4, "input.malformed-json")]


def test_when_observe_mode_then_out_holds_every_line_and_violations_are_still_reported(
    kg: Any, mixed: tuple[Path, list[bytes], list[bool]], tmp_path: Path
) -> None:
    path, _, _ = mixed

    result = kg(
        "scan",
        path,
        "--sink",
        "shared-training",
        "--mode",
        "observe",
        "--out",
        "out.jsonl",
        "--report",
        "report.json",
    )

    assert result.code == 1
    assert (tmp_path / "out.jsonl").read_bytes() == path.read_bytes()
    report = load(tmp_path / "report.json")
    assert (report["mode"], report["allowed"], report["blocked"]) == ("observe", 3, 2)
    assert where(report) == [(2, "class.customer-content-shared"), (4, "input.malformed-json")]


def test_when_enforce_mode_finds_a_violation_then_out_is_not_written(
    kg: Any, mixed: tuple[Path, list[bytes], list[bool]], tmp_path: Path
) -> None:
    path, _, _ = mixed
    before = sorted(p.name for p in tmp_path.iterdir())

    result = kg(
        "scan", path, "--sink", "shared-training", "--mode", "enforce", "--out", "out.jsonl"
    )

    assert result.code == 1
    assert not (tmp_path / "out.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temp file left
    assert "not written" in result.err


def test_when_enforce_mode_finds_no_violation_then_out_holds_every_line(
    kg: Any, home: Path, ring: KeyRing, tmp_path: Path
) -> None:
    lines = operator_lines(home, ring, [{"id": i, "text": f"synthetic {i}"} for i in range(4)])
    path = tmp_path / "ops.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))

    result = kg("scan", path, "--sink", "shared-training", "--out", "out.jsonl")

    assert result.code == 0
    assert (tmp_path / "out.jsonl").read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: {**r, "text": "public 1, edited"},
        lambda r: {**r, "extra": "appended field"},
        lambda r: {k: v for k, v in r.items() if k != "text"},
        lambda r: {**r, "id": 1.5},
    ],
    ids=["changed-value", "added-field", "removed-field", "changed-type"],
)
def test_when_sealed_operator_data_is_altered_then_scan_blocks_the_copy(
    tamper: Any, kg: Any, home: Path, ring: KeyRing, tmp_path: Path
) -> None:
    lines = operator_lines(home, ring, [{"id": i, "text": f"public {i}"} for i in range(3)])
    copy = orjson.dumps(tamper(json.loads(lines[1])))
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in [*lines, copy]))

    result = kg("scan", path, "--sink", "shared-training", "--report", "report.json")

    assert result.code == 1
    report = load(tmp_path / "report.json")
    assert where(report) == [(4, "seal.digest-mismatch")]
    assert report["by_rule"] == {"allow.operator-public": 3, "seal.digest-mismatch": 1}


# -- agreements ----------------------------------------------------------------------


def test_when_agreements_are_listed_then_each_shows_active_revoked_or_expired(
    kg: Any, home: Path, ring: KeyRing
) -> None:
    now = time.time()
    assert kg("agreements", "grant", "acme", "--for", "1d", "--reference", "DPA-7").code == 0
    assert kg("agreements", "grant", "globex").code == 0
    assert kg("agreements", "revoke", "globex").code == 0
    with make_guard(home, ring=ring, clock=lambda: now - 1000) as past:
        past.grant_agreement("initech", expires_at=now - 500)

    table = kg("agreements", "list")
    as_json = kg("agreements", "list", "--json")

    assert table.code == as_json.code == 0
    rows = {d["tenant"]: d for d in map(json.loads, as_json.out.splitlines())}
    assert {t: d["state"] for t, d in rows.items()} == {
        "acme": "active",
        "globex": "revoked",
        "initech": "expired",
    }
    assert rows["acme"]["expires_at"] == pytest.approx(now + 86400, abs=60)
    assert rows["acme"]["reference"] == "DPA-7"
    states = {line.split()[1]: line.split()[2] for line in table.out.splitlines()}
    assert states == {"acme": "active", "globex": "revoked", "initech": "expired"}
    only = kg("agreements", "list", "--json", "--tenant", "globex")
    assert [json.loads(line)["tenant"] for line in only.out.splitlines()] == ["globex"]


@pytest.mark.parametrize(
    "args",
    [
        ["--expires", "2001-01-01"],
        ["--expires", "2001-01-01T00:00:00+00:00"],
        ["--expires", "next tuesday"],
        ["--for", "forever"],
        ["--for", "0d"],
        ["--for", "1d", "--expires", "2099-01-01"],
    ],
)
def test_when_grant_expiry_is_past_or_malformed_then_exit_2_and_nothing_is_granted(
    args: list[str], kg: Any
) -> None:
    result = kg("agreements", "grant", "acme", *args)

    assert result.code == 2
    assert result.err.startswith("error:")
    assert kg("agreements", "list", "--json").out == ""


def test_when_revoking_a_tenant_without_agreements_then_exit_1(kg: Any) -> None:
    result = kg("agreements", "revoke", "acme")

    assert result.code == 1
    assert "revoked 0" in result.out


# -- audit ---------------------------------------------------------------------------


def test_when_commands_have_run_then_audit_verify_passes(kg: Any, acme_sealed: Path) -> None:
    assert kg("agreements", "grant", "acme").code == 0
    assert kg("scan", acme_sealed, "--sink", "shared-training").code == 1

    result = kg("audit", "verify")

    assert result.code == 0
    assert "audit log ok" in result.out


def test_when_one_byte_of_an_audit_entry_is_edited_then_audit_verify_names_the_line(
    kg: Any, acme_sealed: Path, home: Path
) -> None:
    assert kg("agreements", "grant", "acme").code == 0
    assert kg("scan", acme_sealed, "--sink", "tenant-fine-tune:acme").code == 0
    log = home / "audit" / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 3
    at = lines[1].index(b'"event":"') + len(b'"event":"')
    lines[1] = lines[1][:at] + b"X" + lines[1][at + 1 :]
    log.write_bytes(b"".join(lines))

    result = kg("audit", "verify")

    assert result.code == 1
    assert "FAILED" in result.err
    assert "line 2" in result.err


# -- config check --------------------------------------------------------------------

VALID_CONFIG = """
[guard]
default_mode = "enforce"

[sinks.router]
kind = "shared-training"
mode = "filter"

[sinks.acme-ft]
kind = "tenant-fine-tune:acme"

[[rules]]
id = "deny-scraped"
effect = "deny"
reason = "scraped data is not licensed"
sources = ["scrape*"]

[retention]
customer_content = "90d"
"""

UNKNOWN_KEY = 'colour = "blue"\n'
UNKNOWN_SINK_KIND = '[sinks.router]\nkind = "shared-everything"\n'
UNSAFE_RULE = """
[[rules]]
id = "leak"
effect = "allow"
reason = "please"
data_classes = ["customer_content"]
sink_kinds = ["shared-training"]
"""
BAD_RETENTION = '[retention]\ncustomer_content = "ninety days"\n'
INVALID_TOML = '[guard\ndefault_mode = "enforce"\n'


def test_when_config_is_valid_then_check_passes_and_scan_uses_its_sinks(
    kg: Any, acme_sealed: Path, tmp_path: Path
) -> None:
    (tmp_path / "kairo-guard.toml").write_text(VALID_CONFIG)

    checked = kg("config", "check")
    scan = kg("scan", acme_sealed, "--sink", "router", "--report", "report.json")

    assert checked.code == 0
    assert "ok" in checked.out
    assert scan.code == 1
    report = load(tmp_path / "report.json")
    assert (report["sink"], report["kind"], report["mode"]) == (
        "router",
        "shared-training",
        "filter",
    )


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (UNKNOWN_KEY, ["colour"]),
        (UNKNOWN_SINK_KIND, ["sinks.router", "shared-everything"]),
        (UNSAFE_RULE, ["leak", "shared sink"]),
        (BAD_RETENTION, ["retention", "ninety days"]),
        (INVALID_TOML, ["not valid TOML", "line 1"]),
    ],
    ids=["unknown-key", "unknown-sink-kind", "unsafe-rule", "bad-retention", "invalid-toml"],
)
def test_when_config_has_an_error_then_check_explains_it_and_exits_2(
    text: str, fragments: list[str], kg: Any, tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text(text)

    result = kg("config", "check", "bad.toml")

    assert result.code == 2
    assert "1 problem" in result.err
    for fragment in fragments:
        assert fragment in result.err


def test_when_config_has_several_schema_errors_then_check_explains_each(
    kg: Any, tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text(
        UNKNOWN_KEY + BAD_RETENTION + "[limits]\nmax_record_bytes = 1\n"
    )

    result = kg("config", "check", "bad.toml")

    assert result.code == 2
    assert "3 problem" in result.err
    for fragment in ["colour", "ninety days", "max_record_bytes"]:
        assert fragment in result.err


def test_when_config_has_several_policy_errors_then_check_explains_each(
    kg: Any, tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text(UNKNOWN_SINK_KIND + UNSAFE_RULE)

    result = kg("config", "check", "bad.toml")

    assert result.code == 2
    assert "2 problem" in result.err
    for fragment in ["shared-everything", "leak"]:
        assert fragment in result.err


def test_when_config_has_every_kind_of_error_then_check_explains_all_of_them(
    kg: Any, tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text(
        UNKNOWN_KEY + BAD_RETENTION + UNKNOWN_SINK_KIND + UNSAFE_RULE
    )

    result = kg("config", "check", "bad.toml")

    assert result.code == 2
    for fragment in ["colour", "ninety days", "shared-everything", "leak"]:
        assert fragment in result.err


def test_when_config_file_is_missing_then_check_exits_2(kg: Any) -> None:
    result = kg("config", "check", "nowhere.toml")

    assert result.code == 2
    assert "no config file" in result.err


def test_when_config_is_invalid_then_other_commands_exit_2(
    kg: Any, acme_sealed: Path, tmp_path: Path
) -> None:
    (tmp_path / "kairo-guard.toml").write_text(UNKNOWN_SINK_KIND)

    result = kg("scan", acme_sealed, "--sink", "shared-training")

    assert result.code == 2
    assert "shared-everything" in result.err


# -- help, demo ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["keys"],
        ["keys", "init"],
        ["keys", "rotate"],
        ["config"],
        ["config", "check"],
        ["label"],
        ["scan"],
        ["agreements"],
        ["agreements", "grant"],
        ["agreements", "revoke"],
        ["agreements", "list"],
        ["audit"],
        ["audit", "verify"],
        ["demo"],
    ],
    ids=lambda c: " ".join(c) or "kairo-guard",
)
def test_when_help_is_asked_then_exit_0_with_usage(command: list[str], kg: Any) -> None:
    result = kg(*command, "--help")

    assert result.code == 0
    assert "Usage:" in result.out
    assert " ".join(command) in result.out


def test_when_demo_runs_then_the_shared_set_is_blocked(cli_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [str(SCRIPT), "demo"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "4 records -> 0 allowed, 4 blocked" in proc.stdout
    assert "customer content stayed out of shared training" in proc.stdout
    assert "acme may call it: True; globex: False" in proc.stdout
    assert "record 0: tenant.erased" in proc.stdout


def test_when_run_as_python_module_then_the_cli_works(cli_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kairo_guard.cli.main", "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )

    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout


def test_tenants_add_prints_a_working_key_once_and_revoke_disables_it(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from kairo_guard.ingest.apikeys import ApiKeyVerifier

    assert main(["tenants", "add", "acme"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("kgk.")
    home = Path(cli_env["KAIRO_GUARD_HOME"])
    ring = KeyRing.from_env_value(cli_env["KAIRO_GUARD_KEY"])
    with make_guard(home, ring=ring) as guard:
        assert ApiKeyVerifier(guard.store).verify(key) == "acme"
        assert key.split(".")[2].encode() not in (home / "state.sqlite3").read_bytes()
    assert main(["tenants", "revoke-keys", "acme"]) == 0
    with make_guard(home, ring=ring) as guard:
        assert ApiKeyVerifier(guard.store).verify(key) is None
    assert main(["tenants", "revoke-keys", "acme"]) == 1
    assert main(["tenants", "add", "not a tenant"]) == 2
