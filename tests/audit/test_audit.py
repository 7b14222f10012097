"""The audit log: round trip, tamper detection, torn tails, processes and failures."""

from __future__ import annotations

import errno
import gc
import hashlib
import hmac
import multiprocessing
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from kairo_guard.audit.log import AuditLog, AuditVerification, verify_audit
from kairo_guard.core.exceptions import AuditError, AuditIntegrityError

KEY = b"k" * 32
KEY_ID = "audit-1"
KEYS = {KEY_ID: KEY}
N = 1000
SUFFIX = len(b',"hash":"') + 64 + len(b'"}\n')

Lines = list[bytes]
Check = Callable[[Lines], AuditVerification]


def _entry(i: int) -> dict[str, str | int]:
    return {
        "decision": "allow" if i % 3 else "block",
        "rule": f"R{i % 7}",
        "n": i,
        "digest": hashlib.sha256(str(i).encode()).hexdigest(),
    }


def _write_log(directory: Path, n: int, start: int = 0) -> None:
    with AuditLog(directory, KEY, KEY_ID) as log:
        for i in range(start, start + n):
            log.append(_entry(i))


def _lines(directory: Path) -> Lines:
    return (directory / "audit.jsonl").read_bytes().splitlines(keepends=True)


def _seal(body: bytes) -> bytes:
    """Finish a line from its body with a correct self-hash, as anyone can."""
    digest = hashlib.sha256(body).hexdigest().encode()
    return body[:-1] + b',"hash":"' + digest + b'"}\n'


def _rehash(line: bytes) -> bytes:
    return _seal(line[:-SUFFIX] + b"}")


def _hash_of(line: bytes) -> str:
    return str(orjson.loads(line)["hash"])


@dataclass(frozen=True)
class Built:
    lines: Lines
    head: bytes


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    directory = tmp_path_factory.mktemp("built")
    _write_log(directory, N)
    return Built(_lines(directory), (directory / "audit.head").read_bytes())


@pytest.fixture
def check(tmp_path: Path, built: Built) -> Check:
    """Verify tampered lines that sit next to the original signed head."""
    (tmp_path / "audit.head").write_bytes(built.head)

    def run(lines: Lines) -> AuditVerification:
        (tmp_path / "audit.jsonl").write_bytes(b"".join(lines))
        return verify_audit(tmp_path, KEYS)

    return run


def _edit(lines: Lines, i: int) -> Lines:
    return [*lines[:i], lines[i].replace(b'"rule":"R', b'"rule":"X', 1), *lines[i + 1 :]]


def _edit_and_rehash(lines: Lines, i: int) -> Lines:
    return [*lines[:i], _rehash(_edit(lines, i)[i]), *lines[i + 1 :]]


def _delete(lines: Lines, i: int) -> Lines:
    return lines[:i] + lines[i + 1 :]


def _swap(lines: Lines, i: int) -> Lines:
    return [*lines[:i], lines[i + 1], lines[i], *lines[i + 2 :]]


def _insert_forged(lines: Lines, i: int) -> Lines:
    """A line with the right seq and a correct self-hash, but a made-up prev."""
    forged = _seal(orjson.dumps({"seq": i, "ts": 1.0, "prev": "ab" * 32, "decision": "allow"}))
    return [*lines[:i], forged, *lines[i:]]


def test_when_1000_entries_are_appended_and_closed_then_all_verify_and_are_signed(
    tmp_path: Path,
) -> None:
    _write_log(tmp_path, N)

    result = verify_audit(tmp_path, KEYS)

    assert result == AuditVerification(True, N, N, None, None, ())
    entries = [orjson.loads(line) for line in _lines(tmp_path)]
    assert [e["seq"] for e in entries] == list(range(N))
    assert [e["prev"] for e in entries] == ["0" * 64] + [e["hash"] for e in entries[:-1]]
    assert [{k: e[k] for k in ("decision", "rule", "n", "digest")} for e in entries] == [
        _entry(i) for i in range(N)
    ]
    assert orjson.loads((tmp_path / "audit.head").read_bytes())["count"] == N


@pytest.mark.parametrize(
    ("tamper", "bad_line", "problem"),
    [
        pytest.param(lambda ls: _edit(ls, 499), 500, "hash does not match", id="edit"),
        pytest.param(
            lambda ls: _edit_and_rehash(ls, 499),
            501,
            "prev does not match the hash of line 500",
            id="edit-and-rehash",
        ),
        pytest.param(
            lambda ls: _edit_and_rehash(ls, N - 1),
            N,
            "differs from the one in audit.head",
            id="edit-and-rehash-last",
        ),
        pytest.param(lambda ls: _delete(ls, 0), 1, "seq is 1, expected 0", id="delete-first"),
        pytest.param(lambda ls: _delete(ls, 499), 500, "seq is 500, expected 499", id="delete"),
        pytest.param(
            lambda ls: [*ls[:499], ls[9], *ls[499:]],
            500,
            "seq is 9, expected 499",
            id="insert-copy",
        ),
        pytest.param(lambda ls: _insert_forged(ls, 499), 500, "prev does not match", id="forged"),
        pytest.param(lambda ls: _swap(ls, 499), 500, "seq is 500, expected 499", id="swap"),
        pytest.param(lambda ls: ls[:-1], N, "signs 1000 entries but the log holds 999", id="cut"),
        pytest.param(lambda ls: [], 1, "signs 1000 entries but the log holds 0", id="cut-all"),
        pytest.param(lambda ls: [*ls[:5], b"\n", *ls[5:]], 6, "not an intact", id="blank"),
        pytest.param(
            lambda ls: [
                *ls[:1],
                _seal(orjson.dumps({"seq": 1, "ts": "now", "prev": _hash_of(ls[0])})),
                *ls[1:],
            ],
            2,
            "ts is not a number",
            id="ts-not-a-number",
        ),
        pytest.param(lambda ls: [*ls[:-1], ls[-1][:-1]], N, "torn last line", id="torn"),
    ],
)
def test_when_the_log_is_tampered_with_then_verify_names_the_first_bad_line(
    check: Check, built: Built, tamper: Callable[[Lines], Lines], bad_line: int, problem: str
) -> None:
    result = check(tamper(built.lines))

    assert (result.ok, result.first_bad_line) == (False, bad_line)
    assert problem in (result.problem or "")


@pytest.mark.parametrize(
    ("tamper", "expected_bad"),
    [
        pytest.param(_edit, lambda i: i + 1, id="edit"),
        pytest.param(_delete, lambda i: i + 1, id="delete"),
    ],
)
def test_when_any_single_entry_is_tampered_with_then_verify_names_its_line(
    check: Check,
    built: Built,
    tamper: Callable[[Lines, int], Lines],
    expected_bad: Callable[[int], int],
) -> None:
    missed = [
        i for i in range(N) if check(tamper(built.lines, i)).first_bad_line != expected_bad(i)
    ]

    assert missed == []


def test_when_any_two_adjacent_entries_are_swapped_then_verify_names_the_first(
    check: Check, built: Built
) -> None:
    missed = [i for i in range(N - 1) if check(_swap(built.lines, i)).first_bad_line != i + 1]

    assert missed == []


def test_when_the_tail_is_cut_by_any_number_of_entries_then_the_head_detects_it(
    check: Check, built: Built
) -> None:
    results = {k: check(built.lines[: N - k]) for k in range(1, N + 1)}

    assert [k for k, r in results.items() if r.ok or r.first_bad_line != N - k + 1] == []
    assert all("tail truncated" in (r.problem or "") for r in results.values())


def test_when_a_forged_entry_is_appended_after_the_head_then_verify_warns_it_is_unsigned(
    check: Check, built: Built
) -> None:
    forged = _seal(orjson.dumps({"seq": N, "ts": 1.0, "prev": _hash_of(built.lines[-1])}))

    result = check([*built.lines, forged])

    assert (result.ok, result.entries, result.signed_entries) == (True, N + 1, N)
    assert "1001-1001 (1 entries) are not yet covered by the signed head" in result.warnings[0]


def _edit_head(head: bytes, **changes: object) -> bytes:
    return orjson.dumps(orjson.loads(head) | changes)


def _resign(head: bytes, key: bytes, **changes: object) -> bytes:
    fields = orjson.loads(head) | changes
    del fields["mac"]
    mac = hmac.new(key, orjson.dumps(fields), hashlib.sha256).hexdigest()
    return orjson.dumps(fields | {"mac": mac})


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        pytest.param(lambda h: _edit_head(h, mac="0" * 64), "mac does not verify", id="bad-mac"),
        pytest.param(lambda h: _resign(h, b"x" * 32), "mac does not verify", id="wrong-key"),
        pytest.param(
            lambda h: _resign(h, KEY, key_id="other"), "unknown key id 'other'", id="unknown-key-id"
        ),
        pytest.param(lambda h: _edit_head(h, count=999), "mac does not verify", id="count-edited"),
        pytest.param(lambda h: b"{not json", "not valid JSON", id="garbage"),
        pytest.param(lambda h: orjson.dumps({"v": 2}), "not a version-1 head", id="wrong-version"),
    ],
)
def test_when_the_head_is_not_signed_by_a_known_key_then_verify_fails(
    tmp_path: Path, built: Built, head: Callable[[bytes], bytes], problem: str
) -> None:
    (tmp_path / "audit.jsonl").write_bytes(b"".join(built.lines))
    (tmp_path / "audit.head").write_bytes(head(built.head))

    result = verify_audit(tmp_path, KEYS)

    assert (result.ok, result.signed_entries, result.first_bad_line) == (False, 0, None)
    assert problem in (result.problem or "")


def test_when_the_head_is_missing_then_verify_fails_unless_the_log_is_empty(
    tmp_path: Path, built: Built
) -> None:
    assert verify_audit(tmp_path, KEYS) == AuditVerification(True, 0, 0, None, None, ())
    (tmp_path / "audit.jsonl").write_bytes(b"".join(built.lines))

    result = verify_audit(tmp_path, KEYS)

    assert not result.ok
    assert "audit.head is missing" in (result.problem or "")


def test_when_entries_follow_the_last_head_update_then_verify_warns_and_the_next_writer_signs(
    tmp_path: Path,
) -> None:
    _write_log(tmp_path, 10)
    head_after_10 = (tmp_path / "audit.head").read_bytes()
    _write_log(tmp_path, 5, start=10)
    (tmp_path / "audit.head").write_bytes(head_after_10)  # as if we crashed before replacing it

    crashed = verify_audit(tmp_path, KEYS)
    _write_log(tmp_path, 1, start=15)
    resumed = verify_audit(tmp_path, KEYS)

    assert (crashed.ok, crashed.entries, crashed.signed_entries) == (True, 15, 10)
    assert "lines 11-15 (5 entries) are not yet covered" in crashed.warnings[0]
    assert resumed == AuditVerification(True, 16, 16, None, None, ())


def test_when_the_head_key_is_rotated_then_the_new_writer_signs_and_both_keys_verify(
    tmp_path: Path,
) -> None:
    _write_log(tmp_path, 3)
    with AuditLog(tmp_path, b"n" * 32, "audit-2", verify_keys=KEYS) as log:
        log.append({"after": "rotation"})

    result = verify_audit(tmp_path, KEYS | {"audit-2": b"n" * 32})

    assert result == AuditVerification(True, 4, 4, None, None, ())
    assert not verify_audit(tmp_path, KEYS).ok


def test_when_the_head_is_signed_with_a_key_the_writer_lacks_then_it_refuses_the_log(
    tmp_path: Path,
) -> None:
    # the reproduction: cut the log back, write a head under a key id nobody holds; the
    # writer used to trust it "for its count only" and its next head made verify pass
    _write_log(tmp_path, 5)
    lines = _lines(tmp_path)
    (tmp_path / "audit.jsonl").write_bytes(b"".join(lines[:2]))
    last = orjson.loads(lines[1])["hash"]
    forged = {"v": 1, "count": 2, "hash": last, "ts": 1.0, "key_id": "attacker", "mac": "0" * 64}
    (tmp_path / "audit.head").write_bytes(orjson.dumps(forged))

    with pytest.raises(AuditIntegrityError, match=r"key id 'attacker'.*does not hold"):
        AuditLog(tmp_path, KEY, KEY_ID)
    assert len(_lines(tmp_path)) == 2  # nothing appended, no head re-signed over the cut
    assert not verify_audit(tmp_path, KEYS).ok
    # a rotated writer that was not given the old key refuses the old head too
    _write_log(tmp_path / "rotated", 2)
    with pytest.raises(AuditIntegrityError, match="does not hold"):
        AuditLog(tmp_path / "rotated", b"n" * 32, "audit-2")


def test_when_a_log_is_reopened_then_the_chain_continues(tmp_path: Path) -> None:
    _write_log(tmp_path, 3)
    _write_log(tmp_path, 4, start=3)

    assert verify_audit(tmp_path, KEYS) == AuditVerification(True, 7, 7, None, None, ())
    assert [orjson.loads(line)["n"] for line in _lines(tmp_path)] == list(range(7))


def test_when_a_torn_line_follows_the_head_then_verify_fails_and_a_new_writer_recovers_it(
    tmp_path: Path,
) -> None:
    _write_log(tmp_path, 10)
    fragment = b'{"seq":10,"ts":1.0,"prev":"ab'
    with (tmp_path / "audit.jsonl").open("ab") as out:
        out.write(fragment)

    torn = verify_audit(tmp_path, KEYS)
    with AuditLog(tmp_path, KEY, KEY_ID) as log:
        log.append({"after": "recovery"})
        log.flush()
    recovered = verify_audit(tmp_path, KEYS)

    assert (torn.ok, torn.entries, torn.first_bad_line) == (False, 10, 11)
    assert "line 11: torn last line" in (torn.problem or "")
    [moved] = tmp_path.glob("audit.torn.*")
    assert moved.read_bytes() == fragment
    lines = [orjson.loads(line) for line in _lines(tmp_path)]
    assert {k: lines[10][k] for k in ("seq", "event", "bytes", "sha256")} == {
        "seq": 10,
        "event": "torn_tail_recovered",
        "bytes": len(fragment),
        "sha256": hashlib.sha256(fragment).hexdigest(),
    }
    assert lines[11]["after"] == "recovery"
    assert (recovered.ok, recovered.entries, recovered.signed_entries) == (True, 12, 12)
    assert "line 11: the writer moved a torn tail of 29 bytes" in recovered.warnings[0]


@pytest.mark.parametrize(
    ("cut", "problem"),
    [
        pytest.param(20, "torn", id="torn-inside-signed-range"),
        pytest.param(None, "signs 10 entries but audit.jsonl holds 9", id="last-entry-removed"),
    ],
)
def test_when_the_signed_range_was_cut_then_a_new_writer_refuses_and_writes_nothing(
    tmp_path: Path, cut: int | None, problem: str
) -> None:
    _write_log(tmp_path, 10)
    log_file = tmp_path / "audit.jsonl"
    lines = _lines(tmp_path)
    log_file.write_bytes(b"".join(lines)[:-cut] if cut else b"".join(lines[:-1]))
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())

    with pytest.raises(AuditIntegrityError, match=problem) as raised:
        AuditLog(tmp_path, KEY, KEY_ID)

    assert raised.value.line == 10
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before
    assert verify_audit(tmp_path, KEYS).first_bad_line == 10


def _append_in_process(directory: str, tag: str, n: int, barrier: threading.Barrier) -> None:
    barrier.wait()
    with AuditLog(Path(directory), KEY, KEY_ID, batch_size=7, flush_interval=0.005) as log:
        for i in range(n):
            log.append({"writer": tag, "i": i})


def test_when_two_processes_append_to_one_directory_then_the_chain_stays_contiguous(
    tmp_path: Path,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    workers = [
        ctx.Process(target=_append_in_process, args=(str(tmp_path), tag, 500, barrier))
        for tag in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    result = verify_audit(tmp_path, KEYS)
    entries = [orjson.loads(line) for line in _lines(tmp_path)]

    assert [worker.exitcode for worker in workers] == [0, 0]
    assert result == AuditVerification(True, 1000, 1000, None, None, ())
    assert [e["seq"] for e in entries] == list(range(1000))
    for tag in ("a", "b"):
        assert [e["i"] for e in entries if e["writer"] == tag] == list(range(500))


def test_when_threads_append_concurrently_then_every_entry_is_chained(tmp_path: Path) -> None:
    with AuditLog(tmp_path, KEY, KEY_ID, batch_size=16) as log:

        def append_250(t: int) -> None:
            for i in range(250):
                log.append({"t": t, "i": i})

        threads = [threading.Thread(target=append_250, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert verify_audit(tmp_path, KEYS) == AuditVerification(True, 1000, 1000, None, None, ())


def test_when_an_entry_waits_longer_than_flush_interval_then_it_is_on_disk(
    tmp_path: Path,
) -> None:
    with AuditLog(tmp_path, KEY, KEY_ID, flush_interval=0.05) as log:
        log.append({"decision": "block"})
        time.sleep(0.05 * 3)

        on_disk = (tmp_path / "audit.jsonl").read_bytes()

    assert b'"decision":"block"' in on_disk
    assert verify_audit(tmp_path, KEYS).signed_entries == 1


def test_when_batch_size_entries_are_waiting_then_they_are_written_at_once(
    tmp_path: Path,
) -> None:
    with AuditLog(tmp_path, KEY, KEY_ID, batch_size=5, flush_interval=60) as log:
        for i in range(5):
            log.append({"i": i})

        assert len(_lines(tmp_path)) == 5


def _break_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "disk on fire")

    monkeypatch.setattr(os, "fsync", broken_fsync)


@pytest.mark.parametrize("next_call", ["append", "flush"])
def test_when_the_background_flush_fails_then_the_next_call_raises_and_keeps_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, next_call: str
) -> None:
    log = AuditLog(tmp_path, KEY, KEY_ID, flush_interval=0.01)
    _break_fsync(monkeypatch)
    log.append({"decision": "allow"})
    time.sleep(0.2)

    with pytest.raises(AuditError, match="disk on fire"):
        getattr(log, next_call)(*([{"decision": "block"}] if next_call == "append" else []))
    monkeypatch.undo()
    log.close()

    assert verify_audit(tmp_path, KEYS) == AuditVerification(True, 1, 1, None, None, ())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.head", "audit.jsonl"]


def test_when_close_cannot_write_then_it_raises_and_the_log_stays_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path, KEY, KEY_ID, flush_interval=0.01)
    _break_fsync(monkeypatch)
    log.append({"decision": "allow"})
    time.sleep(0.2)

    with pytest.raises(AuditError, match="disk on fire"):
        log.close()
    log.close()

    with pytest.raises(AuditError, match="closed"):
        log.append({})


@pytest.mark.parametrize(
    "entry",
    [{"seq": 1}, {"ts": 1.0}, {"prev": "x"}, {"hash": "x"}, {"x": object()}, {1: "x"}],
    ids=["seq", "ts", "prev", "hash", "not-json", "non-str-key"],
)
def test_when_an_entry_is_reserved_or_not_json_then_append_raises_value_error(
    tmp_path: Path, entry: dict[object, object]
) -> None:
    with AuditLog(tmp_path, KEY, KEY_ID) as log, pytest.raises(ValueError, match="audit entr"):
        log.append(entry)  # type: ignore[arg-type]


def test_when_the_log_is_closed_then_append_raises_and_close_does_nothing(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "new" / "audit"
    log = AuditLog(directory, KEY, KEY_ID)
    log.close()
    log.close()

    with pytest.raises(AuditError, match="closed"):
        log.append({})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert verify_audit(directory, KEYS) == AuditVerification(True, 0, 0, None, None, ())


def test_when_the_log_is_garbage_collected_then_buffered_entries_are_written(
    tmp_path: Path,
) -> None:
    log = AuditLog(tmp_path, KEY, KEY_ID, flush_interval=60)
    log.append({"decision": "allow"})
    del log
    gc.collect()

    assert verify_audit(tmp_path, KEYS).signed_entries == 1


def test_when_the_interpreter_exits_without_close_then_buffered_entries_are_written(
    tmp_path: Path,
) -> None:
    script = (
        "import sys; from pathlib import Path; from kairo_guard.audit.log import AuditLog\n"
        "log = AuditLog(Path(sys.argv[1]), b'k' * 32, 'audit-1', flush_interval=60)\n"
        "log.append({'decision': 'allow'})\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)

    assert verify_audit(tmp_path, KEYS).signed_entries == 1
