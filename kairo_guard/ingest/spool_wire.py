"""The pipe between a service and its spool writer process: bodies one way, acks back.

A request is ``<IQHHH`` (length of the rest, sequence number, lengths of tenant, source
and request line) then tenant, source, request line and body. An empty source asks for
no seal (index only). An ack is ``<QBH`` (sequence number, status, length) then, for
status 0, the body's SHA-256 digest (64 hex characters) and its seal; for any other
status, why the body was not recorded. Acks come in the order of the requests, each once
its body is durable.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import NamedTuple

RING = struct.Struct("<I")
"""The first thing a child (writer or indexer) reads on its input: the length of the
service's key ring (key-file JSON), then the ring: children never look keys up on their
own, so they hold exactly the keys of the guard that started them."""
REQUEST = struct.Struct("<IQHHH")
ACK = struct.Struct("<QBH")
ACK_OK = 0
ACK_FAILED = 1
_FIXED = REQUEST.size - 4  # what the length counts of the header


def request_parts(
    seq: int, tenant: bytes, source: bytes, meta: bytes, chunks: list[bytes]
) -> list[bytes]:
    """The buffers of one request (written as they are: no copy of the body)."""
    size = _FIXED + len(tenant) + len(source) + len(meta) + sum(len(c) for c in chunks)
    header = REQUEST.pack(size, seq, len(tenant), len(source), len(meta))
    return [header, tenant, source, meta, *chunks]


class Request(NamedTuple):
    """One body to spool, as the writer reads it."""

    seq: int
    tenant: str
    source: str
    meta: bytes
    body: bytes


def read_requests(buffer: bytearray) -> Iterator[Request]:
    """Yield the whole requests at the front of ``buffer`` and remove them from it.

    Raises:
        ValueError: the stream is not this protocol (the writer stops).
    """
    at = 0
    view = memoryview(buffer)
    try:
        while len(buffer) - at >= REQUEST.size:
            size, seq, nt, ns, nm = REQUEST.unpack_from(buffer, at)
            end = at + 4 + size
            if end > len(buffer):
                break
            pos = at + REQUEST.size
            if pos + nt + ns + nm > end:
                raise ValueError("malformed spool request")
            tenant = bytes(view[pos : pos + nt]).decode()
            source = bytes(view[pos + nt : pos + nt + ns]).decode("ascii")
            meta = bytes(view[pos + nt + ns : pos + nt + ns + nm])
            yield Request(seq, tenant, source, meta, bytes(view[pos + nt + ns + nm : end]))
            at = end
    finally:
        view.release()
        del buffer[:at]


def ack(seq: int, digest: str, seal: str) -> bytes:
    """The ack of a durable body."""
    payload = (digest + seal).encode("ascii")
    return ACK.pack(seq, ACK_OK, len(payload)) + payload


def nack(seq: int, reason: str) -> bytes:
    """The ack of a body that was not recorded."""
    payload = reason.encode("utf-8", "replace")[:4000]
    return ACK.pack(seq, ACK_FAILED, len(payload)) + payload


class Ack(NamedTuple):
    """One ack, as the service reads it."""

    seq: int
    ok: bool
    digest: str
    seal: str
    reason: str


def read_acks(buffer: bytearray) -> list[Ack]:
    """Return the whole acks at the front of ``buffer`` and remove them from it."""
    found: list[Ack] = []
    at = 0
    while len(buffer) - at >= ACK.size:
        seq, status, n = ACK.unpack_from(buffer, at)
        end = at + ACK.size + n
        if end > len(buffer):
            break
        payload = bytes(buffer[at + ACK.size : end])
        if status == ACK_OK:
            text = payload.decode("ascii")
            found.append(Ack(seq, True, text[:64], text[64:], ""))
        else:
            found.append(Ack(seq, False, "", "", payload.decode("utf-8", "replace")))
        at = end
    del buffer[:at]
    return found


def ring_message(ring_json: bytes) -> bytes:
    """The key ring as a child's first input."""
    return RING.pack(len(ring_json)) + ring_json


def read_ring(fd: int) -> bytes:
    """Read the key ring a child receives first (blocking).

    Raises:
        EOFError: the input ended before the ring.
    """
    data = _read_exactly(fd, RING.size)
    (size,) = RING.unpack(data)
    return _read_exactly(fd, size)


def _read_exactly(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError("input ended before the key ring")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)
