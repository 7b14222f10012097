"""Building a tenant dataset is all or nothing: a failure leaves no directory behind, so
the same build can simply be run again."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from kg_testing import make_guard

from kairo_guard import Guard, IsolationViolation, KeyRing
from kairo_guard.core.exceptions import StoreError
from kairo_guard.store.sqlite import SQLiteStore
from kairo_guard.tenancy import dataset_files, dataset_service
from kairo_guard.tenancy.manifest import MANIFEST_FILE, RECORDS_FILE, DatasetError


def docs(guard: Guard, tenant: str = "acme", n: int = 3) -> list[dict[str, Any]]:
    return [guard.label_record({"text": f"{tenant} doc {i}"}, tenant=tenant) for i in range(n)]


def build(guard: Guard, out: Path, records: Iterable[object]) -> None:
    builder = guard.tenant_dataset("acme")
    builder.add_all(records)
    builder.write(out)


def left_behind(parent: Path) -> list[str]:
    """Every entry of ``parent``, hidden staging directories included."""
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def fail_store(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(info: object) -> None:
        raise StoreError("state database error: disk I/O error")

    monkeypatch.setattr(guard.store, "add_dataset", refuse)


def fail_manifest(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    real = dataset_files.write_file

    def write_file(path: Path, chunks: Iterable[bytes]) -> None:
        if path.name == MANIFEST_FILE:  # records are written, the manifest is not
            raise OSError(28, "No space left on device")
        real(path, chunks)

    monkeypatch.setattr(dataset_service, "write_file", write_file)


def fill_target_meanwhile(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    real = dataset_files.write_file

    def write_file(path: Path, chunks: Iterable[bytes]) -> None:
        real(path, chunks)
        if path.name == MANIFEST_FILE:  # someone else writes into the target meanwhile
            target = path.parent.parent / "ds"
            target.mkdir(exist_ok=True)
            (target / "theirs.txt").write_text("not ours")

    monkeypatch.setattr(dataset_service, "write_file", write_file)


FAILURES: dict[str, tuple[Callable[[Guard, pytest.MonkeyPatch], None], type[Exception]]] = {
    "store": (fail_store, StoreError),
    "disk-full": (fail_manifest, OSError),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("existing", [False, True], ids=["new-dir", "empty-dir"])
def test_when_a_build_fails_midway_then_nothing_is_left_and_the_retry_succeeds(
    guard: Guard,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    existing: bool,
) -> None:
    guard.grant_agreement("acme")
    parent = tmp_path / "out"
    parent.mkdir()
    if existing:
        (parent / "ds").mkdir()
    inject, error = FAILURES[failure]
    with monkeypatch.context() as patch:
        inject(guard, patch)
        with pytest.raises(error):
            build(guard, parent / "ds", docs(guard))
    # no new directory (an empty one given stays as it was), no hidden staging directory
    assert left_behind(parent) == (["ds"] if existing else [])
    assert left_behind(parent / "ds") == []
    assert guard.datasets("acme") == []

    build(guard, parent / "ds", docs(guard))  # the same build, run again
    dataset = guard.open_dataset(parent / "ds")
    assert len(dataset) == 3
    assert left_behind(parent) == ["ds"]
    assert sorted(p.name for p in (parent / "ds").iterdir()) == [MANIFEST_FILE, RECORDS_FILE]
    assert [d.id for d in guard.datasets("acme")] == [dataset.manifest.dataset_id]


def test_when_the_target_is_filled_during_the_build_then_it_is_not_merged_into(
    guard: Guard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard.grant_agreement("acme")
    fill_target_meanwhile(guard, monkeypatch)
    with pytest.raises(DatasetError, match=r"dataset\.exists"):
        build(guard, tmp_path / "ds", docs(guard))
    assert left_behind(tmp_path / "ds") == ["theirs.txt"]  # theirs, untouched
    assert [p for p in left_behind(tmp_path) if p.startswith(".")] == []
    assert guard.datasets("acme") == []


@pytest.mark.parametrize("mode", ["refused-record", "no-agreement", "empty"])
def test_when_a_build_is_refused_then_no_directory_is_made_and_the_retry_succeeds(
    guard: Guard, tmp_path: Path, mode: str
) -> None:
    records: list[object] = list(docs(guard))
    if mode == "refused-record":
        records.append(guard.label_record({"text": "not acme's"}, tenant="globex"))
    if mode != "no-agreement":
        guard.grant_agreement("acme")
    if mode == "empty":
        records = []
    with pytest.raises((IsolationViolation, DatasetError)):
        build(guard, tmp_path / "ds", records)
    assert left_behind(tmp_path) == ["state"]

    guard.grant_agreement("acme", reference="retry")
    build(guard, tmp_path / "ds", docs(guard))
    assert len(guard.open_dataset(tmp_path / "ds")) == 3


# -- the CLI --------------------------------------------------------------------------


@pytest.fixture
def lines(cli_env: dict[str, str]) -> dict[str, bytes]:
    """Sealed JSONL lines made with the CLI's own key and state."""
    ring = KeyRing.from_env_value(cli_env["KAIRO_GUARD_KEY"])
    with make_guard(Path(cli_env["KAIRO_GUARD_HOME"]), ring=ring) as guard:
        return {
            name: orjson.dumps(guard.label_record({"text": f"{tenant} note"}, tenant=tenant))
            for name, tenant in (("acme", "acme"), ("globex", "globex"))
        }


def test_when_the_cli_build_fails_then_the_same_command_succeeds_once_the_input_is_fixed(
    kg: Any, lines: dict[str, bytes], tmp_path: Path
) -> None:
    assert kg("agreements", "grant", "acme")[0] == 0
    src = tmp_path / "in.jsonl"
    src.write_bytes(lines["acme"] + b"\n" + lines["globex"] + b"\n")
    command = ("dataset", "build", src, "--tenant", "acme", "--out", tmp_path / "ds")
    assert kg(*command)[0] == 1
    assert not (tmp_path / "ds").exists()

    src.write_bytes(lines["acme"] + b"\n")
    code, out, err = kg(*command)
    assert code == 0, err
    assert "1 records" in out


@pytest.mark.sqlite_only
def test_when_the_cli_cannot_record_the_dataset_then_the_retry_is_not_dataset_exists(
    kg: Any, lines: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert kg("agreements", "grant", "acme")[0] == 0
    src = tmp_path / "in.jsonl"
    src.write_bytes(lines["acme"] + b"\n")
    command = ("dataset", "build", src, "--tenant", "acme", "--out", tmp_path / "ds")

    def refuse(self: SQLiteStore, info: object) -> None:
        raise StoreError("state database error: database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(SQLiteStore, "add_dataset", refuse)
        assert kg(*command)[0] != 0
    assert not (tmp_path / "ds").exists()
    code, _, err = kg(*command)
    assert code == 0, err
    assert "dataset.exists" not in err
