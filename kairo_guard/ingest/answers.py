"""The middleware's own answers: refusals, in one shape.

A refusal is JSON ``{"error", "detail"[, "rule"]}`` with the status's word; 401 carries
``WWW-Authenticate``, 503 ``Retry-After``; a websocket is closed with code 1008 and the
detail as its reason. The decision is noted on the request's span first.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson

from kairo_guard.ingest.request_state import Receive, Send
from kairo_guard.otel.request_span import deny_request

Scope = MutableMapping[str, Any]


async def deny(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    detail: str,
    *,
    rule: str | None = None,
) -> None:
    """Refuse the request with ``status`` (http) or close the websocket (1008)."""
    deny_request(scope, status, STATUS_WORDS.get(status, "error"))
    if scope["type"] == "websocket":
        message = await receive()
        if message.get("type") == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    error = {"error": STATUS_WORDS.get(status, "error"), "detail": detail}
    body = orjson.dumps(error if rule is None else {**error, "rule": rule})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="kairo-guard"'))
    elif status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


STATUS_WORDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    413: "too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}
