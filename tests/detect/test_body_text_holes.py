"""Every string of a spooled body is indexed as a handler reads it, so operator data that
copies a passage of it is refused at vetting.

Bodies reach the spool through ``GuardMiddleware`` (httpx's ASGI transport); vetting
runs the spool's indexer first (the real one, reading the body with ``read_body``), then
vets a copy of a decoded passage relabelled as operator data. The bodies are the ways
a body's text was left out: a parser's value of a small JSON body (a root seal field,
the first value of a repeated key), text read raw after JSON stopped parsing (its
``\\u`` escapes undecoded), a form (percent-encoded), JSON text or a form sent
inside a JSON string (its own escapes undecoded once the body is parsed), and text sent
base64-encoded (a file's content in a JSON field, a whole body, a MIME part).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import pytest
from base64_forms import b64
from corpus import prose
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kairo_guard import ContentRefused, Guard
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware

MiB = 1 << 20
FRENCH = (
    "Le comité de direction a décidé de fermer l'usine de Lyon en février, de réaffecter "
    "les quarante-deux techniciens à Grenoble et de céder la filiale suisse à un fonds "
    'genevois pour dix-huit millions d\'euros, selon le "procès-verbal" confidentiel 🚚\n'
    "transmis aux actionnaires majoritaires\tla semaine dernière."
)
RUSSIAN = (
    "Совет директоров решил закрыть завод в Казани к марту, перевести сорок два инженера "
    "в Самару и продать швейцарскую дочернюю компанию женевскому фонду за восемнадцать "
    "миллионов евро, говорится в конфиденциальном протоколе, направленном крупнейшим "
    "акционерам на прошлой неделе, включая перенос сроков аудита."
)
ASCII = (
    'Board minutes: "Project Halcyon" is paused; the C:\\finance\\q3 models show a 14% '
    "shortfall.\nNext steps:\n\t1) renegotiate the Rotterdam charter,\n\t2) defer the "
    "Osaka hiring wave until the audit committee signs off on the revised capital plan "
    "for the northern terminals and the harbour works in the eastern basin."
)


def _escaped(value: object) -> bytes:
    """JSON as Python's json writes it by default (``ensure_ascii``)."""
    return json.dumps(value).encode()


def _large_malformed(passage: str) -> bytes:
    """Over a segment of JSON lines; one part-way has a bad escape, the passage is last."""
    filler = [_escaped({"id": i, "text": prose("acme-filler", 2)}) for i in range(600)]
    lines = [*filler, b'{"note": "draft \\x"}', *filler, _escaped({"text": passage})]
    body = b"\n".join(lines)
    assert len(body) > MiB
    return body


def _large_nested(passage: str) -> bytes:
    """Over a segment of JSON lines, streamed as JSON; the last holds the passage as JSON
    text inside a string, as ``json.dumps`` writes it."""
    filler = [_escaped({"id": i, "text": prose("acme-filler", 2)}) for i in range(1200)]
    body = b"\n".join([*filler, _escaped({"payload": json.dumps({"text": passage})})])
    assert len(body) > MiB
    return body


def _large_base64(passage: str, key: str) -> bytes:
    """A file's text base64-encoded in one JSON field, over a segment: the reader cuts
    the run where a segment ends, at any offset in its groups of four (``key``'s length
    moves it), and the passage is past the cut."""
    filler = "\n".join(prose(f"acme-file-{i}", 2) for i in range(1500))
    body = _escaped({key: b64(filler + "\n" + passage)})
    assert len(body) > MiB
    return body


BODIES: dict[str, Callable[[str], bytes]] = {
    "root-seal-field": lambda p: _escaped({"_kairo": p, "id": 1}),
    "root-seal-field-object": lambda p: _escaped({"_kairo": {"note": p}, "id": 1}),
    "repeated-key": lambda p: b'{"text": ' + _escaped(p) + b', "text": "ok"}',
    "nested-repeated-key": lambda p: b'{"a": [{"t": ' + _escaped(p) + b', "t": "ok"}]}',
    "json-lines-bad-first-line": lambda p: b'{"note": "draft \\x"}\n' + _escaped({"text": p}),
    "json-lines-comment-first": lambda p: b"// exported\n" + _escaped({"text": p}),
    "json-lines-number-first": lambda p: b"1\n" + _escaped({"text": p}),
    "json-text-sequence": lambda p: b"\x1e" + _escaped({"text": p}) + b"\n",
    "large-json-fails-part-way": _large_malformed,
    "form": lambda p: urlencode({"id": "7", "text": p}).encode(),
    "form-of-json": lambda p: urlencode({"payload": json.dumps({"text": p})}).encode(),
    "json-in-json": lambda p: _escaped({"payload": json.dumps({"text": p})}),
    "json-in-json-utf8": lambda p: json.dumps(
        {"payload": json.dumps({"text": p})}, ensure_ascii=False
    ).encode(),
    "form-in-json": lambda p: _escaped({"payload": urlencode({"text": p})}),
    "large-json-in-json": _large_nested,
    "base64-in-json": lambda p: _escaped({"name": "minutes.txt", "content": b64(p)}),
    "base64-urlsafe-unpadded": lambda p: _escaped(
        {"content": base64.urlsafe_b64encode(p.encode()).decode().rstrip("=")}
    ),
    "base64-of-json-in-json": lambda p: _escaped({"content": b64(json.dumps({"text": p}))}),
    "base64-body": lambda p: base64.b64encode(p.encode()),
    **{
        f"large-base64-in-json-{len(key)}": functools.partial(_large_base64, key=key)
        for key in ("fil", "file")  # (offsets every passage failed at before)
    },
    "multipart-base64-part": lambda p: (
        b"--kgb\r\nContent-Disposition: form-data; name=file; filename=m.txt\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(p.encode()).replace(b"\n", b"\r\n")
        + b"--kgb--\r\n"
    ),
}


def _post(guard: Guard, bodies: list[bytes]) -> None:
    """POST each body as tenant acme; all are accepted (and spooled)."""
    key = new_api_key(guard.store, "acme")

    async def upload(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"ok": True}, status_code=201)

    routes = [Route("/documents", upload, methods=["POST"])]
    app = GuardMiddleware(Starlette(routes=routes), guard=guard, max_body_bytes=16 * MiB)

    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kg.test") as client:
            auth = {"authorization": f"Bearer {key}"}
            return [
                (await client.post("/documents", content=body, headers=auth)).status_code
                for body in bodies
            ]

    assert asyncio.run(go()) == [201] * len(bodies)


def _vet_copy(guard: Guard, passage: str) -> str | None:
    """Vet a digest reprinting ``passage`` as operator data: the refusal's rule, or
    None when it is sealed."""
    digest = {"text": "Industry digest, reprinted. " + passage + " End of digest."}
    try:
        guard.seal_operator_data(digest, source="licensed-digest")
    except ContentRefused as exc:
        return exc.rule
    return None


@pytest.mark.parametrize("passage", [FRENCH, RUSSIAN, ASCII], ids=["french", "russian", "ascii"])
@pytest.mark.parametrize("shape", list(BODIES))
def test_when_a_body_hid_a_passage_from_the_indexer_then_a_copy_of_it_is_refused(
    guard: Guard, shape: str, passage: str
) -> None:
    assert len(passage) >= 300
    _post(guard, [BODIES[shape](passage)])
    assert _vet_copy(guard, passage) == FINGERPRINT_RULE


def test_when_such_bodies_were_indexed_then_public_text_in_none_of_them_is_sealed(
    guard: Guard,
) -> None:
    shapes = [make for name, make in BODIES.items() if not name.startswith("large-base64")]
    _post(guard, [make(p) for make in shapes for p in (FRENCH, RUSSIAN, ASCII)])
    assert _vet_copy(guard, FRENCH) == FINGERPRINT_RULE  # the bodies were indexed
    public = [
        prose("public-press-release", 2)[:900],
        "Le conseil municipal a voté le budget des écoles de Grenoble pour l'année "
        "prochaine, avec une hausse des crédits de rénovation énergétique et la création "
        "de deux postes de techniciens, selon le compte rendu publié sur le site de la "
        "ville; les travaux commenceront en février après la consultation des parents.",
        "The quarterly shipping report lists port congestion in Rotterdam and Osaka, "
        "a 14% rise in charter rates, and new capital plans for the northern terminals; "
        "analysts expect the audit of terminal operators to finish before next winter.",
    ]
    for text in public:
        assert _vet_copy(guard, text) is None, text[:40]
