"""The reader's base64 runs: those of text are read decoded (wrapped in lines, joined,
cut from a longer run), base64 that is not text is not read and passes a sink. The
copies of a tenant's text in each base64 form, either direction of the net:
``test_escaped_copies.py``."""

from __future__ import annotations

import base64
import hashlib
import random
from typing import Any

import pytest
from base64_forms import b64, token, wrapped
from corpus import prose
from kg_testing import sealed_record

from kairo_guard import Guard
from kairo_guard.detect.body_text import BASE64_MIN_CHARS, base64_readings

ALLOWED = "allow.operator-public"
GERMAN = (
    "Die Geschäftsführung will das Lager in Kassel im Herbst aufgeben, siebzehn Fahrer nach "
    "Fulda übernehmen und den Fuhrpark für neun Millionen Euro an einen Leasinggeber in Graz "
    "verkaufen, wie aus der vertraulichen Vorlage für den Aufsichtsrat hervorgeht, die auch "
    "die Kündigung des Mietvertrags und die Verschiebung der Inventur nennt."
)
JAPANESE = (
    "取締役会は、三月までに名古屋工場を閉鎖し、四十二名の技術者を仙台へ異動させ、スイスの子会社を"
    "ジュネーブの投資ファンドに一千八百万ユーロで売却することを決定したと、先週主要株主に送付された"
    "機密の議事録に記されている。監査の延期も含まれている。"
)


def _check(guard: Guard, records: list[dict[str, Any]]) -> Any:
    sealed = [sealed_record(guard, r, data_class="operator_public") for r in records]
    return guard.check(sealed, sink="shared-training")


def test_when_base64_at_a_sink_is_not_a_tenants_text_then_it_passes(guard: Guard) -> None:
    guard.fingerprints.add("acme", {"text": GERMAN})
    guard.fingerprints.add("acme", {"text": JAPANESE})
    rng = random.Random(7)
    public = [
        {"image": base64.b64encode(rng.randbytes(3000)).decode()},  # binary, not text
        {"sha256": hashlib.sha256(b"x").hexdigest() * 3, "id": "a" * 200},
        {"content": b64(prose("public-base64", 3))},
        {"token": token("public claims of a test user, nothing of any tenant's " * 3)},
        {"text": "Der Stadtrat hat den Haushalt für die Schulen in Görlitz beschlossen."},
    ]
    report = _check(guard, public)
    assert report.by_rule == {ALLOWED: 5}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prefix " + b64(GERMAN) + " suffix", [GERMAN]),
        (b64(GERMAN) + "\n" + "word", [GERMAN]),  # the next line is not of its width
        (wrapped(GERMAN, 76, "\r\n") + "\r\n--boundary--", [GERMAN]),
        (b64(GERMAN) + "." + b64(JAPANESE), [GERMAN, JAPANESE]),
        (b64(GERMAN[:60]), []),  # too short to share a fingerprint: not read
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
    assert len(b64(GERMAN[:60])) < BASE64_MIN_CHARS


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 6, 7])
def test_when_a_run_is_a_piece_cut_from_a_longer_one_then_its_text_is_read(cut: int) -> None:
    # a large body is read in segments: a run may start anywhere in a group of four,
    # inside a character, and end inside one
    encoded = b64(JAPANESE + GERMAN)
    (reading,) = base64_readings(encoded[cut:-cut])
    assert GERMAN[:-8] in reading  # (at most 6 bytes cut: ASCII here)
    assert JAPANESE[3:] in reading  # (three bytes a character)


@pytest.mark.parametrize("after", ["\nQUJD", "\nword", "\nxyz", "\n+"])
@pytest.mark.parametrize("length", [80, 81, 82, 200])
def test_when_one_line_is_followed_by_a_short_one_then_its_text_is_read(
    length: int, after: str
) -> None:
    # a line of up to 128 characters and a short one after it may be a wrapped run's
    # last two lines, or a line and a word: read either way
    (reading,) = base64_readings(b64(GERMAN[:length]) + after)
    assert reading.startswith(GERMAN[:length])
