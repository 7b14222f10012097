"""``kairo-guard dataset build``: exit codes, per-line reasons, report and output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from kg_testing import make_guard

from kairo_guard import KeyRing
from kairo_guard.tenancy.manifest import MANIFEST_FILE, RECORDS_FILE


@pytest.fixture
def records(cli_env: dict[str, str], tmp_path: Path) -> dict[str, list[bytes]]:
    """Sealed JSONL lines of two tenants, made with the CLI's own key and state."""
    ring = KeyRing.from_env_value(cli_env["KAIRO_GUARD_KEY"])
    with make_guard(Path(cli_env["KAIRO_GUARD_HOME"]), ring=ring) as guard:
        return {
            t: [
                orjson.dumps(guard.label_record({"text": f"{t} note {i}"}, tenant=t))
                for i in range(3)
            ]
            for t in ("acme", "globex")
        }


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_when_every_record_is_the_tenants_then_the_dataset_is_written_and_exit_is_0(
    kg: Any, records: dict[str, list[bytes]], tmp_path: Path
) -> None:
    assert kg("agreements", "grant", "acme")[0] == 0
    src = write(tmp_path / "in.jsonl", records["acme"])

    code, out, err = kg(
        "dataset", "build", src, "--tenant", "acme", "--out", tmp_path / "ds",
        "--report", tmp_path / "r.json",
    )  # fmt: skip

    assert code == 0, err
    assert "3 records" in out
    manifest = orjson.loads((tmp_path / "ds" / MANIFEST_FILE).read_bytes())
    assert (manifest["tenant"], manifest["record_count"]) == ("acme", 3)
    assert len((tmp_path / "ds" / RECORDS_FILE).read_bytes().splitlines()) == 3
    report = orjson.loads((tmp_path / "r.json").read_bytes())
    assert report["dataset"]["id"] == manifest["dataset_id"]
    assert (report["total"], report["blocked"]) == (3, 0)


def test_when_another_tenants_record_is_mixed_in_then_exit_is_1_with_the_line_and_reason(
    kg: Any, records: dict[str, list[bytes]], tmp_path: Path
) -> None:
    assert kg("agreements", "grant", "acme")[0] == 0
    src = write(tmp_path / "in.jsonl", [*records["acme"][:2], b"", records["globex"][0], b"{bad"])

    code, _, err = kg(
        "dataset", "build", src, "--tenant", "acme", "--out", tmp_path / "ds",
        "--report", tmp_path / "r.json",
    )  # fmt: skip

    assert code == 1
    assert "line 4: tenant.cross-tenant" in err
    assert "line 5: input.malformed-json" in err
    assert not (tmp_path / "ds").exists()
    report = orjson.loads((tmp_path / "r.json").read_bytes())
    assert report["dataset"] is None
    assert [(v["line"], v["rule"]) for v in report["violations"]] == [
        (4, "tenant.cross-tenant"),
        (5, "input.malformed-json"),
    ]


def test_when_the_tenant_has_no_agreement_then_exit_is_1(
    kg: Any, records: dict[str, list[bytes]], tmp_path: Path
) -> None:
    src = write(tmp_path / "in.jsonl", records["acme"])
    code, _, err = kg("dataset", "build", src, "--tenant", "acme", "--out", tmp_path / "ds")
    assert code == 1
    assert "agreement.inactive" in err


@pytest.mark.parametrize("case", ["missing-input", "bad-tenant", "out-not-empty", "empty-input"])
def test_when_usage_is_bad_or_input_unreadable_then_exit_is_2(
    kg: Any, records: dict[str, list[bytes]], tmp_path: Path, case: str
) -> None:
    assert kg("agreements", "grant", "acme")[0] == 0
    src = write(tmp_path / "in.jsonl", records["acme"])
    tenant, out = "acme", tmp_path / "ds"
    if case == "missing-input":
        src = tmp_path / "nope.jsonl"
    elif case == "bad-tenant":
        tenant = "not a tenant"
    elif case == "out-not-empty":
        out.mkdir()
        (out / "keep.txt").write_text("x")
    else:
        src.write_bytes(b"")

    code, _, err = kg("dataset", "build", src, "--tenant", tenant, "--out", out)

    assert code == 2
    assert err.strip()
