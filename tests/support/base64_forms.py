"""Ways text is kept base64-encoded, for the tests of the net's base64 reading."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def wrapped(text: str, width: int, newline: str) -> str:
    """Base64 in lines of ``width`` (MIME: 76 and CRLF; PEM: 64)."""
    encoded = b64(text)
    return newline.join(encoded[i : i + width] for i in range(0, len(encoded), width))


def token(text: str) -> str:
    """A signed token's three parts, the payload a JSON claim holding the text."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    payload = json.dumps({"sub": "42", "note": text}).encode()
    return ".".join([part(b'{"alg":"HS256","typ":"JWT"}'), part(payload), part(os.urandom(32))])


BASE64_FORMS: dict[str, Callable[[str], str]] = {
    "base64": b64,
    "base64-urlsafe-unpadded": lambda doc: (
        base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")
    ),
    "base64-in-a-sentence": lambda doc: f"attachment={b64(doc)}; stored",
    "base64-mime-part": lambda doc: (
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + wrapped(doc, 76, "\r\n") + "\r\n--b--"
    ),
    "base64-pem-like": lambda doc: (
        "-----BEGIN NOTE-----\n" + wrapped(doc, 64, "\n") + "\n-----END NOTE-----"
    ),
    "base64-token-payload": lambda doc: "Bearer " + token(doc),
    "base64-of-a-json-document": lambda doc: b64(json.dumps({"text": doc})),
    "base64-twice": lambda doc: b64(b64(doc)),
    "base64-in-escaped-json": lambda doc: json.dumps({"content": b64(doc)}),
}
"""Each form of a document a reader decodes (the name says how it is kept)."""
