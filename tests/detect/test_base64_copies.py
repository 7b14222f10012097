"""A copy kept base64-encoded (a file's content in a field, a MIME part wrapped in lines,
a token's payload) meets the text it copies: the reader reads such a run both as it is
and decoded, at the index and at the sink; base64 that is not text is not read."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
from collections.abc import Callable
from typing import Any

import pytest
from corpus import prose
from kg_testing import sealed_record

from kairo_guard import Guard
from kairo_guard.detect.body_text import BASE64_MIN_CHARS, base64_readings
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE

ALLOWED = "allow.operator-public"
GERMAN = (
    "Der Vorstand hat beschlossen, das Werk in Dresden bis März zu schließen, zweiundvierzig "
    "Techniker nach Görlitz zu versetzen und die Schweizer Tochter für achtzehn Millionen "
    "Euro an einen Genfer Fonds zu veräußern; so steht es im vertraulichen Protokoll, das "
    "den größten Aktionären übermittelt wurde, einschließlich der Verschiebung der Prüfung."
)
JAPANESE = (
    "取締役会は、三月までに名古屋工場を閉鎖し、四十二名の技術者を仙台へ異動させ、スイスの子会社を"
    "ジュネーブの投資ファンドに一千八百万ユーロで売却することを決定したと、先週主要株主に送付された"
    "機密の議事録に記されている。監査の延期も含まれている。"
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _wrapped(text: str, width: int, newline: str) -> str:
    encoded = _b64(text)
    return newline.join(encoded[i : i + width] for i in range(0, len(encoded), width))


def _token(text: str) -> str:
    """A signed token's three parts, the payload a JSON claim holding the text."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    payload = json.dumps({"sub": "42", "note": text}).encode()
    return ".".join([part(b'{"alg":"HS256","typ":"JWT"}'), part(payload), part(os.urandom(32))])


ENCODINGS: dict[str, Callable[[str], Any]] = {
    "field": lambda doc: {"name": "minutes.txt", "content": _b64(doc)},
    "urlsafe-unpadded": lambda doc: {
        "blob": base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")
    },
    "in-a-sentence": lambda doc: {"log": f"attachment={_b64(doc)}; stored"},
    "mime-part": lambda doc: {
        "raw": "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + _wrapped(doc, 76, "\r\n") + "\r\n--b--"
    },
    "pem-like": lambda doc: {
        "raw": "-----BEGIN NOTE-----\n" + _wrapped(doc, 64, "\n") + "\n-----END NOTE-----"
    },
    "token-payload": lambda doc: {"authorization": "Bearer " + _token(doc)},
    "json-document-encoded": lambda doc: {"content": _b64(json.dumps({"text": doc}))},
    "encoded-twice": lambda doc: {"content": _b64(_b64(doc))},
    "encoded-in-escaped-json": lambda doc: {"line": json.dumps({"content": _b64(doc)})},
}


def _check(guard: Guard, records: list[dict[str, Any]]) -> Any:
    sealed = [sealed_record(guard, r, data_class="operator_public") for r in records]
    return guard.check(sealed, sink="shared-training")


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("doc", [GERMAN, JAPANESE], ids=["german", "japanese"])
def test_when_a_tenants_text_reaches_a_sink_base64_encoded_then_it_blocks(
    guard: Guard, doc: str, encoding: str
) -> None:
    guard.fingerprints.add("acme", {"text": doc})
    report = _check(guard, [ENCODINGS[encoding](doc)])
    assert report.by_rule == {FINGERPRINT_RULE: 1}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("doc", [GERMAN, JAPANESE], ids=["german", "japanese"])
def test_when_a_tenant_sent_base64_text_then_the_decoded_copy_blocks(
    guard: Guard, doc: str, encoding: str
) -> None:
    guard.fingerprints.add("acme", ENCODINGS[encoding](doc))
    report = _check(guard, [{"text": "Reprinted: " + doc}])
    assert report.by_rule == {FINGERPRINT_RULE: 1}


def test_when_base64_at_a_sink_is_not_a_tenants_text_then_it_passes(guard: Guard) -> None:
    guard.fingerprints.add("acme", {"text": GERMAN})
    guard.fingerprints.add("acme", {"text": JAPANESE})
    rng = random.Random(7)
    public = [
        {"image": base64.b64encode(rng.randbytes(3000)).decode()},  # binary, not text
        {"sha256": hashlib.sha256(b"x").hexdigest() * 3, "id": "a" * 200},
        {"content": _b64(prose("public-base64", 3))},
        {"token": _token("public claims of a test user, nothing of any tenant's " * 3)},
        {"text": "Der Stadtrat hat den Haushalt für die Schulen in Görlitz beschlossen."},
    ]
    report = _check(guard, public)
    assert report.by_rule == {ALLOWED: 5}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prefix " + _b64(GERMAN) + " suffix", [GERMAN]),
        (_b64(GERMAN) + "\n" + "word", [GERMAN]),  # the next line is not of its width
        (_wrapped(GERMAN, 76, "\r\n") + "\r\n--boundary--", [GERMAN]),
        (_b64(GERMAN) + "." + _b64(JAPANESE), [GERMAN, JAPANESE]),
        (_b64(GERMAN[:60]), []),  # too short to share a fingerprint: not read
        (base64.b64encode(bytes(range(256))).decode(), []),  # control bytes: not text
        ("x" * 5000, []),
        ("Übergrößenträger" * 20, []),  # a long word, not ASCII
    ],
    ids=["in-text", "line-after", "mime", "two-runs", "short", "binary", "one-letter", "word"],
)
def test_when_text_holds_base64_runs_then_those_of_text_are_read(
    text: str, expected: list[str]
) -> None:
    assert base64_readings(text) == expected
    assert len(_b64(GERMAN[:60])) < BASE64_MIN_CHARS


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 6, 7])
def test_when_a_run_is_a_piece_cut_from_a_longer_one_then_its_text_is_read(cut: int) -> None:
    # a large body is read in segments: a run may start anywhere in a group of four,
    # inside a character, and end inside one
    encoded = _b64(JAPANESE + GERMAN)
    (reading,) = base64_readings(encoded[cut:-cut])
    assert GERMAN[:-8] in reading  # (at most 6 bytes cut: ASCII here)
    assert JAPANESE[3:] in reading  # (three bytes a character)
