"""Fingerprinting request bodies as they stream, with bounded memory.

A body is indexed in segments of :data:`SEGMENT_BYTES`; each segment carries the last
:data:`OVERLAP_BYTES` of the previous one, so a copied span up to that long is always
inside one segment and longer ones leave at least half of it in one. A body that fits
in one segment and is JSON is indexed by its string values (so JSON escapes do not
hide text); otherwise the bytes are read as UTF-8 text.
"""

from __future__ import annotations

import asyncio

import orjson

from kairo_guard.core.types import TenantId
from kairo_guard.detect.fingerprint import FingerprintIndex

SEGMENT_BYTES = 1 << 20
OVERLAP_BYTES = 4096


def body_content(body: bytes) -> object:
    """Return what to fingerprint of a body: its JSON value, else the bytes themselves."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body


class StreamingIndexer:
    """Feeds one request body to the fingerprint index, a segment at a time."""

    __slots__ = ("_buffer", "_index", "_segments", "_tenant", "indexed")

    def __init__(self, index: FingerprintIndex, tenant: TenantId) -> None:
        self._index = index
        self._tenant = tenant
        self._buffer = bytearray()
        self._segments = 0
        self.indexed = 0
        """Fingerprints indexed so far."""

    async def feed(self, chunk: bytes) -> None:
        """Add a chunk; index a segment when one is full (off the event loop)."""
        self._buffer += chunk
        while len(self._buffer) >= SEGMENT_BYTES + OVERLAP_BYTES:
            segment = bytes(self._buffer[: SEGMENT_BYTES + OVERLAP_BYTES])
            del self._buffer[:SEGMENT_BYTES]
            await self._run(segment)

    async def finish(self) -> None:
        """Index what is left (the whole body, if it was one segment)."""
        if not self._buffer:
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        await self._run(body_content(data) if self._segments == 0 else data)

    async def _run(self, content: object) -> None:
        self._segments += 1
        loop = asyncio.get_running_loop()
        self.indexed += await loop.run_in_executor(None, self._index.add, self._tenant, content)
