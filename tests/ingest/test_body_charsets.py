"""A body that is not UTF-8 is indexed as its handler reads it: in the charset its
Content-Type names (``text/plain; charset=windows-1251``), or as Latin-1, which
Starlette reads a form's raw bytes as. The spool keeps no headers, so such a body is
read in each encoding it may be in; binary data is not read as text."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator, Callable

import pytest
from starlette.datastructures import Headers
from starlette.formparsers import FormParser
from test_body_text import _blocked, _post

from kairo_guard import Guard
from kairo_guard.detect.body_text import other_encodings

FRENCH = (
    "Le comité de direction a décidé de fermer l'usine de Lyon en février, de réaffecter "
    "les quarante-deux techniciens à Grenoble et de céder la filiale suisse à un fonds "
    "genevois pour dix-huit millions d'euros, selon le « procès-verbal » confidentiel "
    "transmis aux actionnaires majoritaires la semaine dernière, après l'audit des comptes."
)
RUSSIAN = (
    "Совет директоров решил закрыть завод в Казани к марту, перевести сорок два инженера "
    "в Самару и продать швейцарскую дочернюю компанию женевскому фонду за восемнадцать "
    "миллионов евро, говорится в конфиденциальном протоколе, направленном крупнейшим "
    "акционерам на прошлой неделе, включая перенос сроков аудита."
)
JAPANESE = (
    "取締役会は三月末までに大阪工場を閉鎖し、四十二名の技術者を名古屋へ異動させ、スイスの子会社を"
    "ジュネーブの投資ファンドに千八百万ユーロで売却することを決定したと、先週主要株主に送付された"
    "機密の議事録に記されている。監査の日程も見直され、新しい資本計画は来年の株主総会で承認される"
    "予定であり、北部ターミナルと東部港湾の工事も同じ計画に含まれている。"
)


def _form(passage: str, encoding: str) -> bytes:
    """A form whose value is raw bytes in ``encoding``, spaces as ``+``."""
    return b"id=7&text=" + passage.replace(" ", "+").encode(encoding)


BODIES: dict[str, Callable[[], bytes]] = {
    "latin-1-text": lambda: FRENCH.encode("latin-1"),
    "cp1252-json": lambda: json.dumps({"text": FRENCH}, ensure_ascii=False).encode("cp1252"),
    "cp1251-text": lambda: RUSSIAN.encode("cp1251"),
    "shift-jis-text": lambda: JAPANESE.encode("shift_jis"),
    "gb18030-text": lambda: JAPANESE.encode("gb18030"),
    "utf-16-text": lambda: FRENCH.encode("utf-16"),
    "latin-1-form": lambda: _form(FRENCH, "latin-1"),
}
PASSAGES = {
    "latin-1-text": FRENCH,
    "cp1252-json": FRENCH,
    "cp1251-text": RUSSIAN,
    "shift-jis-text": JAPANESE,
    "gb18030-text": JAPANESE,
    "utf-16-text": FRENCH,
    "latin-1-form": FRENCH,
}


@pytest.mark.parametrize("shape", list(BODIES))
def test_when_a_body_is_not_utf8_then_a_copy_of_its_text_blocks(guard: Guard, shape: str) -> None:
    body = BODIES[shape]()
    assert other_encodings(body)  # not UTF-8
    assert _post(guard, body).status_code == 200
    assert _blocked(guard, PASSAGES[shape])


def test_when_starlette_reads_a_latin1_form_then_the_indexed_reading_is_its_value() -> None:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield _form(FRENCH, "latin-1")
        yield b""

    headers = Headers({"content-type": "application/x-www-form-urlencoded"})
    form = asyncio.run(FormParser(headers, stream()).parse())
    assert form["text"] == FRENCH  # the handler's reading, which the index must hold


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"plain ascii", []),
        ("déjà vu".encode(), []),
        (FRENCH.encode("latin-1"), ["cp1252", "cp1251"]),
        (os.urandom(4096), []),  # binary: control bytes
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), []),
        (FRENCH.encode("utf-16"), ["utf-16"]),
        (FRENCH.encode("utf-16")[:-1], []),  # cut: not UTF-16 either, binary
    ],
    ids=["ascii", "utf-8", "latin-1", "random", "png", "utf-16", "utf-16-cut"],
)
def test_when_bytes_are_examined_then_only_text_gets_other_readings(
    data: bytes, expected: list[str]
) -> None:
    assert other_encodings(data)[: len(expected)] == expected
    if not expected:
        assert other_encodings(data) == []


def test_when_public_text_follows_legacy_bodies_then_it_still_passes(guard: Guard) -> None:
    for make in BODIES.values():
        assert _post(guard, make()).status_code == 200
    assert _blocked(guard, RUSSIAN)  # indexed
    public = (
        "Le conseil municipal a voté le budget des écoles de Grenoble pour l'année "
        "prochaine, avec une hausse des crédits de rénovation énergétique et la création "
        "de deux postes de techniciens, selon le compte rendu publié sur le site de la ville."
    )
    assert not _blocked(guard, public)
