"""Damaged spool segments: a torn tail left by a writer that is gone, a bad record mid-segment.

Segments are written here byte for byte (``encode_body``) as a writer would leave them,
then indexed by the guard's own recovery path (``Guard.wait_indexed``), as a check at a
shared sink does after a crash.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import threading
import time
from pathlib import Path

import orjson
import pytest
from kg_testing import sealed_record

from kairo_guard import Guard
from kairo_guard.core.exceptions import IndexLagging
from kairo_guard.store.spool import SEGMENT_SUFFIX, Backlog, backlog, encode_body

VOCABULARY = (
    "harbour ledger invoice turbine orchard copper lantern meadow quarry ribbon saddle "
    "tunnel velvet walnut anchor beacon cinder dahlia ember falcon garnet hollow iris "
    "juniper kestrel lagoon marble nectar onyx pepper quartz raven sorrel thistle"
)


def _body(seed: int) -> tuple[bytes, str]:
    rnd = random.Random(seed)
    text = " ".join(rnd.choices(VOCABULARY.split(), k=70))
    return orjson.dumps({"text": text}), text


def _record(guard: Guard, body: bytes) -> tuple[bytes, str]:
    digest = hashlib.sha256(body).hexdigest()
    seal = guard.sealer.seal_spooled(digest, tenant="acme", source="api")
    return encode_body("acme", seal, body, b"POST /documents"), digest


def _segment(guard: Guard, data: bytes) -> Path:
    directory = guard.spool_directory
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"seg-{time.time_ns():020d}-{os.getpid()}{SEGMENT_SUFFIX}"
    path.write_bytes(data)
    return path


def _audit(guard: Guard) -> list[dict[str, object]]:
    log = guard.settings.home / "audit" / "audit.jsonl"
    return [orjson.loads(line) for line in log.read_bytes().splitlines()]


def _blocked_by_fingerprint(guard: Guard, text: str) -> bool:
    report = guard.check([{"text": text}], sink=guard.resolve_sink("s", kind="shared-training"))
    return [(v.rule, v.tenant) for v in report.violations] == [
        ("fingerprint.tenant-content", guard.keys.pseudonym("acme"))
    ]


def test_when_the_writer_is_gone_then_a_torn_tail_is_skipped_audited_and_the_rest_indexed(
    guard: Guard,
) -> None:
    (a, text_a), (b, text_b), (c, _) = _body(1), _body(2), _body(3)
    (rec_a, digest_a), (rec_b, digest_b), (rec_c, digest_c) = (_record(guard, x) for x in (a, b, c))
    torn = rec_c[: len(rec_c) // 2]  # the write the kill cut short: never acknowledged
    segment = _segment(guard, rec_a + rec_b + torn)

    guard.wait_indexed(10)

    digests = {row.digest for row in guard.store.list_provenance("acme")}
    assert {digest_a, digest_b} <= digests
    assert digest_c not in digests
    tails = [e for e in _audit(guard) if e.get("event") == "spool.torn_tail"]
    assert [(e["segment"], e["bytes"]) for e in tails] == [(segment.name, len(torn))]
    assert backlog(guard.spool_directory) == Backlog(0, 0)
    assert _blocked_by_fingerprint(guard, text_a)
    assert _blocked_by_fingerprint(guard, text_b)


def _held_segment(guard: Guard, data: bytes) -> tuple[Path, int]:
    segment = _segment(guard, data)
    fd = os.open(segment, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # as a live writer holds its segment
    return segment, fd


def test_when_the_writer_still_holds_a_segment_then_a_partial_record_is_waited_for_not_skipped(
    guard: Guard,
) -> None:
    (a, text_a), (c, text_c) = _body(4), _body(5)
    rec_a, _ = _record(guard, a)
    rec_c, digest_c = _record(guard, c)
    segment, fd = _held_segment(guard, rec_a + rec_c[:20])  # a write in progress
    waiter = threading.Thread(target=guard.wait_indexed, args=(20,))
    try:
        waiter.start()
        time.sleep(0.5)  # the waiter indexes A and reaches the partial record
        with segment.open("ab") as f:  # the writer finishes the record, then closes
            f.write(rec_c[20:])
    finally:
        os.close(fd)
    waiter.join(30)

    assert not waiter.is_alive()
    assert digest_c in {row.digest for row in guard.store.list_provenance("acme")}
    assert not [e for e in _audit(guard) if e.get("event") == "spool.torn_tail"]
    assert backlog(guard.spool_directory) == Backlog(0, 0)
    assert _blocked_by_fingerprint(guard, text_a)
    assert _blocked_by_fingerprint(guard, text_c)


@pytest.mark.timeout(10)
def test_when_a_live_writer_never_finishes_a_record_then_wait_indexed_raises_at_its_bound(
    guard: Guard,
) -> None:
    rec_a, _ = _record(guard, _body(9)[0])
    rec_c, _ = _record(guard, _body(10)[0])
    _, fd = _held_segment(guard, rec_a + rec_c[:20])
    try:
        started = time.monotonic()
        with pytest.raises(IndexLagging):
            guard.wait_indexed(0.3)
        assert time.monotonic() - started < 5
    finally:
        os.close(fd)


def _corrupt_middle(guard: Guard) -> tuple[Path, bytes, bytes, str, str, str]:
    (a, text_a), (b, text_b), (c, text_c) = _body(6), _body(7), _body(8)
    rec_a, rec_b, rec_c = (_record(guard, x)[0] for x in (a, b, c))
    bad = bytearray(rec_b)
    bad[-5] ^= 0xFF  # a flipped byte in B's payload: its CRC fails
    return _segment(guard, rec_a + bytes(bad) + rec_c), rec_b, rec_c, text_a, text_b, text_c


def test_when_a_record_mid_segment_fails_its_crc_then_earlier_ones_are_indexed_the_skip_audited(
    guard: Guard,
) -> None:
    segment, rec_b, _, text_a, _, text_c = _corrupt_middle(guard)

    guard.wait_indexed(10)

    assert _blocked_by_fingerprint(guard, text_a)
    assert _blocked_by_fingerprint(guard, text_c)  # after the damage: read too
    skipped = [e for e in _audit(guard) if str(e.get("event")).startswith("spool.")]
    assert skipped, "the bytes skipped past a bad record must be on the record"
    assert skipped[0]["event"] == "spool.damaged"
    assert skipped[0]["segment"] == segment.name
    assert skipped[0]["bytes"] == len(rec_b)  # B alone: reading resumes at C


def test_when_a_record_mid_segment_fails_its_crc_then_copies_of_later_records_do_not_pass(
    guard: Guard,
) -> None:
    _, _, _, _, _, text_c = _corrupt_middle(guard)
    laundered = sealed_record(guard, {"note": text_c}, data_class="operator_public")
    sink = guard.resolve_sink("s", kind="shared-training")

    report = guard.check([laundered], sink=sink)

    # C was whole, after B, in a finished segment: it was acknowledged. Either it is
    # indexed (the reader resyncs past B) or the check fails closed; it must not pass.
    assert report.blocked == 1
