"""One HTTP request as the middleware follows it: the body capped, digested and
spooled as the app reads it, and its seal added to the response.

The body is sealed and made durable in the ingestion spool before the app sees its end
(:mod:`kairo_guard.ingest.spooling`), so a body that could not be recorded is never
accepted (503); the spool's indexer fingerprints it afterwards, and shared sinks wait
for it (the index watermark). A body over the cap is answered 413 at once, before the
app's own error handling could answer otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from kairo_guard.core.exceptions import StoreError
from kairo_guard.ingest.provenance import RequestProvenance
from kairo_guard.ingest.spooling import IngestSpool

logger = logging.getLogger("kairo_guard.ingest.middleware")

PROVENANCE_HEADER = b"kairo-provenance"
"""The response header that carries the seal of the request's content."""
EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()
BODY_ERRORS = {
    400: "invalid Content-Length",
    413: "request body is over the size limit",
    503: "the request body could not be recorded; retry later",
}
"""The detail of a refused body, by status."""
LINGER_BYTES = 1 << 20
"""Of a body over the cap, at most this much more is read (and dropped) before the 413
goes out, so the server does not close the connection on unread bytes: a client still
sending would get a reset instead of the answer (a lingering close)."""
LINGER_SECONDS = 1.0
"""How long that reading may take; past it the 413 goes out all the same."""

Message = MutableMapping[str, Any]
"""An ASGI message."""
Receive = Callable[[], Awaitable[Message]]
"""An ASGI ``receive`` callable."""
Send = Callable[[Message], Awaitable[None]]
"""An ASGI ``send`` callable."""


class BodyTooLarge(Exception):
    """Raised inside the app's ``receive`` when the body passes the cap."""


class BodyNotRecorded(Exception):
    """Raised inside the app's ``receive`` when the body could not be spooled (503)."""


class RequestState:
    """Per-request bookkeeping: body size, digest and bytes, response status.

    Args:
        provenance: what the handler learns of the request (its seal, once read).
        spool: where the sealed body is made durable.
        source: the ``source`` of the body's seal.
        cap: the body's size limit in bytes; past it the answer is 413.
        send: the server's ``send``.
        meta: ``METHOD path`` of the request, spooled with the body.
    """

    __slots__ = (
        "_cap",
        "_chunks",
        "_meta",
        "_rejected",
        "_send",
        "_source",
        "_spool",
        "provenance",
        "status",
    )

    def __init__(
        self,
        provenance: RequestProvenance,
        spool: IngestSpool,
        source: str,
        cap: int,
        send: Send,
        meta: bytes = b"",
    ) -> None:
        self._meta = meta
        self._send = send
        self._cap = cap
        self._chunks: list[bytes] = []
        self._rejected = False
        self._spool = spool
        self._source = source
        self.provenance = provenance
        self.status: int | None = None

    def wrap_receive(self, receive: Receive) -> Receive:
        """The app's ``receive``: each body chunk is counted and hashed, and the whole
        body sealed and spooled before the app sees its end."""

        async def guarded_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not self.provenance.complete:
                body = message.get("body", b"")
                size = self.provenance.size + len(body)
                if size > self._cap:
                    await drain(receive, message)
                    await self._reject(413)
                    raise BodyTooLarge
                self.provenance.size = size
                if body:
                    self._chunks.append(body)
                if not message.get("more_body", False):
                    await self._record()
            return message

        return guarded_receive

    async def read_ahead(self, receive: Receive) -> Receive | None:
        """Read (and spool) a whole body before the app runs; return the app's
        ``receive``, which hands it the body in one message. None: the client left
        before its body arrived, or the body was answered 413 or 503; the app is not run.

        For bodies declared small: the app never waits on the spool half-way through
        its own reading, and a client gone before its body arrived costs nothing more.
        """
        provenance, chunks, cap = self.provenance, self._chunks, self._cap
        size = 0
        while True:  # the body's messages, counted (wrap_receive's work, inline)
            message = await receive()
            if message["type"] != "http.request":
                return None
            body = message.get("body", b"")
            size += len(body)
            if size > cap:
                await drain(receive, message)
                await self._reject(413)
                return None
            if body:
                chunks.append(body)
            if not message.get("more_body", False):
                break
        provenance.size = size
        if size:
            self._chunks = []
            try:  # digested and sealed by the spool's writer, off this event loop
                digest, seal = await self._spool.record(
                    provenance.tenant, chunks, self._source, self._meta
                )
            except StoreError:
                await self._reject(503)
                return None
            provenance.finish(digest, seal)
        else:
            provenance.finish(EMPTY_DIGEST, None)
        if len(chunks) == 1:  # the common case: one message with data (and maybe an
            # empty last one): the app gets the data in one message
            if message.get("body") is not chunks[0]:
                message = {"type": "http.request", "body": chunks[0], "more_body": False}
            return replay(message, receive)
        last = len(chunks) - 1
        pending = [
            {"type": "http.request", "body": chunk, "more_body": i < last}
            for i, chunk in enumerate(chunks)
        ] or [{"type": "http.request", "body": b"", "more_body": False}]
        pending.reverse()

        async def replay_all() -> Message:
            return pending.pop() if pending else await receive()

        return replay_all

    async def _record(self) -> None:
        if not self.provenance.size:
            self.provenance.finish(EMPTY_DIGEST, None)
            return
        chunks, self._chunks = self._chunks, []
        provenance = self.provenance
        try:  # digested and sealed by the spool's writer, off this event loop
            digest, seal = await self._spool.record(
                provenance.tenant, chunks, self._source, self._meta
            )
        except StoreError:
            await self._reject(503)
            raise BodyNotRecorded from None
        provenance.finish(digest, seal)

    async def _reject(self, status: int) -> None:
        # Answer now, before the app's error handling can answer 500, and drop
        # whatever the app sends after it.
        self._rejected = True
        if self.status is None:
            self.status = status
            word = "too_large" if status == 413 else "unavailable"
            body = orjson.dumps({"error": word, "detail": BODY_ERRORS[status]})
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            if status == 503:
                headers.append((b"retry-after", b"1"))
            await self._send({"type": "http.response.start", "status": status, "headers": headers})
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


async def drain(receive: Receive, message: Message) -> None:
    """Read and drop the rest of a refused body after ``message``, up to
    :data:`LINGER_BYTES` and :data:`LINGER_SECONDS` (never an error: the refusal stands
    whatever the client does)."""
    left = LINGER_BYTES
    try:
        async with asyncio.timeout(LINGER_SECONDS):
            while message.get("more_body", False) and left > 0:
                message = await receive()
                if message.get("type") != "http.request":
                    return
                left -= len(message.get("body", b""))
    except Exception:  # noqa: BLE001 - timed out, or the client left: answer anyway
        return


def closing_at_shutdown(
    scope: MutableMapping[str, Any], send: Send, close: Callable[[], None]
) -> Send:
    """``send`` for a scope the middleware passes through. For ``lifespan``, ``close``
    runs once the app has shut down and before the server hears so (in a thread: it
    makes queued bodies durable and waits for the indexer to index what was accepted);
    other scopes get ``send`` itself."""
    if scope.get("type") != "lifespan":
        return send

    async def closing_send(message: Message) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            try:
                await asyncio.get_running_loop().run_in_executor(None, close)
            except Exception:  # the server shuts down all the same; the indexer drains
                logger.exception("cannot close the ingestion spool at shutdown")
        await send(message)

    return closing_send


def replay(first: Message, receive: Receive) -> Receive:
    """``receive`` that hands out ``first`` before what ``receive`` brings."""
    pending: Message | None = first

    async def replayed() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replayed


def content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The declared body size; -1 when malformed or declared twice differently."""
    values = [v for k, v in headers if k == b"content-length"]
    if not values:
        return None
    if len(set(values)) != 1 or not values[0].strip().isdigit():
        return -1
    return int(values[0])


BODY_ENCODED = "body.encoded"
"""The rule of a 415 for a body sent with a ``Content-Encoding`` (gzip, ...): the
fingerprint net would index its compressed bytes, not its text."""


def content_encoding(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The body's ``Content-Encoding`` unless absent or ``identity`` (of several such
    headers, the first that is not)."""
    for name, value in headers:
        if name == b"content-encoding":
            coding = value.decode("latin-1").strip()
            if coding.lower() not in ("", "identity"):
                return coding
    return None
