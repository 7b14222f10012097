"""The pipe protocol between a service and its spool writer: requests, acks, the ring."""

from __future__ import annotations

import os

import pytest

from kairo_guard import KeyRing
from kairo_guard.ingest.spool_wire import (
    ACK,
    REQUEST,
    Ack,
    Request,
    ack,
    nack,
    read_acks,
    read_requests,
    read_ring,
    request_parts,
    ring_message,
)

BODIES = [
    Request(1, "acme", "http", b"POST /documents", b'{"text": "quarterly plan"}'),
    Request(2, "globex", "", b"", b"websocket message"),  # index only: no source, no request
    Request(3, "acme", "agent-run:chat", "PUT /d\u00e9j\u00e0".encode(), bytes(range(256)) * 9),
    Request(4, "initech", "http", b"POST /empty", b""),
]


def _wire(request: Request, *, split: int = 1) -> bytes:
    """The request as the service writes it, its body handed over in ``split`` chunks."""
    body = request.body
    step = max(1, len(body) // split)
    chunks = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    parts = request_parts(
        request.seq, request.tenant.encode(), request.source.encode("ascii"), request.meta, chunks
    )
    return b"".join(parts)


def test_when_requests_arrive_whole_then_each_reads_back_as_written_and_the_buffer_empties() -> (
    None
):
    buffer = bytearray(b"".join(_wire(r, split=3) for r in BODIES))
    assert list(read_requests(buffer)) == BODIES
    assert buffer == b""


def test_when_bytes_arrive_one_at_a_time_then_every_request_comes_out_once_and_whole() -> None:
    stream = b"".join(_wire(r) for r in BODIES)
    buffer = bytearray()
    seen: list[Request] = []
    sizes: list[int] = []
    for i in range(len(stream)):
        buffer += stream[i : i + 1]
        got = list(read_requests(buffer))
        seen += got
        if got:
            sizes.append(i + 1)
    assert seen == BODIES
    assert buffer == b""
    # each request came out exactly when its last byte arrived, not before
    ends = [len(b"".join(_wire(r) for r in BODIES[: n + 1])) for n in range(len(BODIES))]
    assert sizes == ends


def test_when_a_request_is_cut_short_then_it_waits_and_the_whole_ones_before_it_come_out() -> None:
    first, second = _wire(BODIES[0]), _wire(BODIES[2])
    buffer = bytearray(first + second[:-1])
    assert list(read_requests(buffer)) == [BODIES[0]]
    assert buffer == second[:-1]  # the partial request is kept for the next read
    buffer += second[-1:]
    assert list(read_requests(buffer)) == [BODIES[2]]


@pytest.mark.parametrize(
    ("size", "lengths"),
    [
        (REQUEST.size - 4 + 3, (10, 0, 0)),  # the tenant runs past the request's end
        (REQUEST.size - 4 + 3, (1, 1, 2)),  # the fields together do
        (0, (0, 0, 0)),  # shorter than its own header
    ],
    ids=["tenant-past-end", "fields-past-end", "shorter-than-header"],
)
def test_when_a_length_is_malformed_then_reading_raises_value_error(
    size: int, lengths: tuple[int, int, int]
) -> None:
    header = REQUEST.pack(size, 7, *lengths)
    buffer = bytearray(header + b"abc" + b"\0" * 32)
    with pytest.raises(ValueError, match="malformed"):
        list(read_requests(buffer))


def test_when_acks_arrive_one_byte_at_a_time_then_each_reads_back_once_in_order() -> None:
    digest = "ab" * 32
    stream = (
        ack(1, digest, "kg1.k1.seal")
        + nack(2, "cannot write the spool: No space")
        + ack(3, digest, "")
    )
    buffer = bytearray()
    acks: list[Ack] = []
    for i in range(len(stream)):
        buffer += stream[i : i + 1]
        acks += read_acks(buffer)
    assert acks == [
        Ack(1, True, digest, "kg1.k1.seal", ""),
        Ack(2, False, "", "", "cannot write the spool: No space"),
        Ack(3, True, digest, "", ""),
    ]
    assert buffer == b""


def test_when_a_nack_reason_is_long_then_it_is_cut_and_still_frames() -> None:
    message = nack(9, "x" * 10_000) + ack(10, "cd" * 32, "s")
    acks = read_acks(bytearray(message))
    assert [a.seq for a in acks] == [9, 10]
    assert len(acks[0].reason) == 4000
    assert ACK.unpack_from(message)[2] == 4000


def test_when_the_ring_message_is_read_from_a_pipe_then_the_same_keys_come_back() -> None:
    ring = KeyRing.generate()
    message = ring_message(ring.to_json())
    rfd, wfd = os.pipe()
    try:
        os.write(wfd, message + b"then the first request")
        got = read_ring(rfd)
        assert os.read(rfd, 100) == b"then the first request"  # nothing past the ring consumed
    finally:
        os.close(rfd)
        os.close(wfd)
    restored = KeyRing.from_json(got)
    assert restored.to_json() == ring.to_json()
    assert restored.pseudonym("acme") == ring.pseudonym("acme")


def test_when_the_input_ends_before_the_whole_ring_then_read_ring_raises_eof() -> None:
    message = ring_message(KeyRing.generate().to_json())
    rfd, wfd = os.pipe()
    try:
        os.write(wfd, message[:-5])
        os.close(wfd)
        wfd = -1
        with pytest.raises(EOFError):
            read_ring(rfd)
    finally:
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)
