"""One HTTP request as the middleware follows it: the body capped, digested and
fingerprinted as the app reads it, and its seal added to the response.

The body is indexed as the tenant's content before the app sees its end, so a body
that cannot be fingerprinted is never accepted; a body over the cap is answered 413 at
once, before the app's own error handling could answer otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from kairo_guard.ingest.body import StreamingIndexer
from kairo_guard.ingest.provenance import RequestProvenance

PROVENANCE_HEADER = b"kairo-provenance"
"""The response header that carries the seal of the request's content."""
BODY_ERRORS = {400: "invalid Content-Length", 413: "request body is over the size limit"}
"""The detail of a refused body, by status."""

Message = MutableMapping[str, Any]
"""An ASGI message."""
Receive = Callable[[], Awaitable[Message]]
"""An ASGI ``receive`` callable."""
Send = Callable[[Message], Awaitable[None]]
"""An ASGI ``send`` callable."""


class BodyTooLarge(Exception):
    """Raised inside the app's ``receive`` when the body passes the cap."""


class RequestState:
    """Per-request bookkeeping: body size and digest, response status.

    Args:
        provenance: what the handler learns of the request (its seal, once read).
        indexer: fingerprints the body as the tenant's content while it streams.
        cap: the body's size limit in bytes; past it the answer is 413.
        send: the server's ``send``.
    """

    __slots__ = ("_cap", "_hash", "_indexer", "_rejected", "_send", "provenance", "status")

    def __init__(
        self, provenance: RequestProvenance, indexer: StreamingIndexer, cap: int, send: Send
    ) -> None:
        self._send = send
        self._cap = cap
        self._hash = hashlib.sha256()
        self._rejected = False
        self._indexer = indexer
        self.provenance = provenance
        self.status: int | None = None

    def wrap_receive(self, receive: Receive) -> Receive:
        """The app's ``receive``: each body chunk is counted, hashed and fingerprinted
        before the app sees it."""

        async def guarded_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not self.provenance.complete:
                body = message.get("body", b"")
                size = self.provenance.size + len(body)
                if size > self._cap:
                    await self._reject()
                    raise BodyTooLarge
                self.provenance.size = size
                self._hash.update(body)
                # The content is indexed before the app sees its end: a body that
                # cannot be fingerprinted is not accepted (the error reaches the app).
                await self._indexer.feed(body)
                if not message.get("more_body", False):
                    await self._indexer.finish()
                    self.provenance.finish(self._hash.hexdigest())
            return message

        return guarded_receive

    @property
    def indexed(self) -> int:
        """Fingerprints indexed from this request's body."""
        return self._indexer.indexed

    async def _reject(self) -> None:
        # Answer 413 now, before the app's error handling can answer 500, and drop
        # whatever the app sends after it.
        self._rejected = True
        if self.status is None:
            self.status = 413
            body = orjson.dumps({"error": "too_large", "detail": BODY_ERRORS[413]})
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            await self._send({"type": "http.response.start", "status": 413, "headers": headers})
            await self._send({"type": "http.response.body", "body": body})

    async def guarded_send(self, message: Message) -> None:
        """The app's ``send``: the response carries the body's seal; after a 413,
        nothing the app sends goes out."""
        if self._rejected:
            return
        if message["type"] == "http.response.start":
            self.status = message["status"]
            seal = self.provenance.seal
            if seal is not None:
                headers = list(message.get("headers", ()))
                headers.append((PROVENANCE_HEADER, seal.encode("ascii")))
                message = {**message, "headers": headers}
        await self._send(message)


def content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The declared body size; -1 when malformed or declared twice differently."""
    values = [v for k, v in headers if k == b"content-length"]
    if not values:
        return None
    if len(set(values)) != 1 or not values[0].strip().isdigit():
        return -1
    return int(values[0])
