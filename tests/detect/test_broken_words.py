"""A copy with something slipped into its words every few characters (a space, a dot,
a hyphen, a combining mark), its spaces taken out, its accents dropped, or every l
written as a capital I (TR39 holds them confusable; case folding parts them) still shares
the tenant's fingerprints: normalized text is letters and digits only, each without its
diacritics. Public text stays allowed."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from kg_testing import sealed_record

from kairo_guard import Guard
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE

ALLOWED = "allow.operator-public"
DOC = (
    "Minutes of the supervisory board, closed session. The Tarragona refinery stays shut "
    "until the insurer signs off on the flare stack repairs; output moves to Sines with "
    "Petróleos Ibéricos under a tolling deal priced at 7.40 euros a barrel. Legal flags "
    "exposure in the Quimper arbitration and asks that no figure leave this room before "
    "the auditors' letter arrives, expected the week after the harbour strike ends."
)
FRENCH = (
    "Le comité de direction a décidé de fermer l'usine de Lyon en février, de réaffecter "
    "les quarante-deux techniciens à Grenoble et de céder la filiale suisse à un fonds "
    "genevois pour dix-huit millions d'euros, selon le procès-verbal confidentiel transmis "
    "aux actionnaires majoritaires la semaine dernière, après l'audit des comptes."
)
PUBLIC = (
    "The city council approved next year's school budget on Tuesday, with more money for "
    "energy renovation, two new technician posts and a consultation of parents before the "
    "works begin in February; the minutes are published on the city's website."
)


def _every(text: str, step: int, change: Callable[[str], str]) -> str:
    """``change`` the letter nearest each ``step``-th character (inside a word)."""
    rng = random.Random(7)
    out = list(text)
    for start in range(0, len(out), step):
        spots = [i for i in range(start, min(start + step, len(out))) if out[i].isalpha()]
        if spots:
            at = rng.choice(spots)
            out[at] = change(out[at])
    return "".join(out)


def _unaccented(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


COPIES: dict[str, Callable[[str], str]] = {
    "space-in-a-word-every-30": lambda t: _every(t, 30, lambda c: c + " "),
    "dot-in-a-word-every-30": lambda t: _every(t, 30, lambda c: c + "."),
    "hyphen-in-a-word-every-30": lambda t: _every(t, 30, lambda c: c + "-"),
    "middle-dot-every-25": lambda t: _every(t, 25, lambda c: c + "\u00b7"),
    "stroke-mark-every-20": lambda t: _every(t, 20, lambda c: c + "\u0336"),
    "acute-every-40": lambda t: _every(t, 40, lambda c: unicodedata.normalize("NFC", c + "\u0301")),
    "enclosing-circle-every-30": lambda t: _every(t, 30, lambda c: c + "\u20dd"),
    "spaces-removed": lambda t: t.replace(" ", ""),
    "camel-case": lambda t: "".join(w.capitalize() for w in t.split()),
    "accents-dropped": _unaccented,
    "capital-i-for-l": lambda t: t.replace("l", "I"),
}


def _check(guard: Guard, records: list[dict[str, Any]]) -> Any:
    sealed = [sealed_record(guard, r, data_class="operator_public") for r in records]
    return guard.check(sealed, sink="shared-training")


@pytest.mark.parametrize("doc", [DOC, FRENCH], ids=["english", "french"])
@pytest.mark.parametrize("copy", list(COPIES))
def test_when_a_copy_has_its_words_broken_or_marked_then_it_blocks(
    guard: Guard, copy: str, doc: str
) -> None:
    guard.fingerprints.add("acme", {"text": doc})
    laundered = COPIES[copy](doc)
    assert laundered != doc
    report = _check(guard, [{"text": f"Digest. {PUBLIC} {laundered} End."}])
    assert report.by_rule == {FINGERPRINT_RULE: 1}


def test_when_public_text_is_checked_against_those_documents_then_it_passes(
    guard: Guard,
) -> None:
    guard.fingerprints.add("acme", {"text": DOC})
    guard.fingerprints.add("acme", {"text": FRENCH})
    public = [
        {"text": PUBLIC},
        {"text": "".join(w.capitalize() for w in PUBLIC.split())},
        {
            "text": "Le conseil municipal a voté le budget des écoles de Grenoble pour l'année "
            "prochaine, avec deux postes de techniciens et une consultation des parents."
        },
        {"text": "Minutes of the board: the refinery reopened after the insurer's review."},
    ]
    report = _check(guard, public)
    assert report.by_rule == {ALLOWED: 4}
