"""A copy kept escaped (JSON text inside a string, ``json.dumps`` of a document in a
field or a log line: ``Caf\\u00e9``; HTML character references; percent-encoding; base64 in
its forms; text stored reversed under a right-to-left override, which shows it in
reading order) meets
the text it copies: the reader reads escaped text both as it is and decoded, at the
index and at the sink."""

from __future__ import annotations

import html
import html.entities
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from base64_forms import BASE64_FORMS
from corpus import prose
from kg_testing import sealed_record

from kairo_guard import Guard
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE

ALLOWED = "allow.operator-public"
GERMAN = (
    "Der Vorstand hat beschlossen, das Werk in Dresden bis März zu schließen, zweiundvierzig "
    "Techniker nach Görlitz zu versetzen und die Schweizer Tochter für achtzehn Millionen "
    "Euro an einen Genfer Fonds zu veräußern; so steht es im vertraulichen Protokoll, das "
    "den größten Aktionären übermittelt wurde, einschließlich der Verschiebung der Prüfung."
)
GREEK = (
    "Το διοικητικό συμβούλιο αποφάσισε να κλείσει το εργοστάσιο της Πάτρας έως τον Μάρτιο, "  # noqa: RUF001
    "να μεταθέσει σαράντα δύο μηχανικούς στη Λάρισα και να πουλήσει την ελβετική θυγατρική "  # noqa: RUF001
    "σε ένα ταμείο της Γενεύης για δεκαοκτώ εκατομμύρια ευρώ, σύμφωνα με το εμπιστευτικό "  # noqa: RUF001
    "πρακτικό που στάλθηκε στους μεγαλύτερους μετόχους την περασμένη εβδομάδα."
)


def _check(guard: Guard, records: list[dict[str, Any]]) -> Any:
    sealed = [sealed_record(guard, r, data_class="operator_public") for r in records]
    return guard.check(sealed, sink="shared-training")


ESCAPES: dict[str, Callable[[str], str]] = {
    "json-in-a-field": lambda doc: json.dumps({"event": "upload", "text": doc}),
    "json-string-body": lambda doc: json.dumps(doc)[1:-1],
    "json-escaped-twice": lambda doc: json.dumps({"line": json.dumps({"text": doc})}),
    "json-escaped-three-times": lambda doc: json.dumps([json.dumps([json.dumps(doc)])]),
    "html-references": lambda doc: html.escape(doc).encode("ascii", "xmlcharrefreplace").decode(),
    "html-named": lambda doc: "".join(
        f"&{html.entities.codepoint2name[ord(c)]};" if ord(c) in html.entities.codepoint2name else c
        for c in doc
    ),
    "percent-encoded": lambda doc: quote(doc),
    "stored-reversed-shown-in-order": lambda doc: "\u202e" + doc[::-1] + "\u202c",
    "stored-reversed-in-a-line": lambda doc: "note:\n\u202e" + doc[::-1] + "\nend",
    **BASE64_FORMS,
}


@pytest.mark.parametrize("escape", list(ESCAPES))
@pytest.mark.parametrize("doc", [GERMAN, GREEK], ids=["german", "greek"])
def test_when_a_tenants_text_reaches_a_sink_escaped_then_it_blocks(
    guard: Guard, doc: str, escape: str
) -> None:
    guard.fingerprints.add("acme", {"text": doc})
    report = _check(guard, [{"log": ESCAPES[escape](doc)}])
    assert report.by_rule == {FINGERPRINT_RULE: 1}


@pytest.mark.parametrize("escape", list(ESCAPES))
@pytest.mark.parametrize("doc", [GERMAN, GREEK], ids=["german", "greek"])
def test_when_a_tenant_sent_escaped_text_then_the_decoded_copy_blocks(
    guard: Guard, doc: str, escape: str
) -> None:
    guard.fingerprints.add("acme", {"payload": ESCAPES[escape](doc)})
    report = _check(guard, [{"text": "Reprinted: " + doc}])
    assert report.by_rule == {FINGERPRINT_RULE: 1}


def test_when_public_text_is_escaped_json_then_it_still_passes(guard: Guard) -> None:
    guard.fingerprints.add("acme", {"text": GERMAN})
    guard.fingerprints.add("acme", {"text": GREEK})
    public = [
        {"log": json.dumps({"text": prose("escaped-public", 2)})},
        {"log": json.dumps({"path": "C:\\data\\new\\table.csv", "note": "Zürich Straße"})},
        {"text": "Der Stadtrat hat den Haushalt für die Schulen in Görlitz beschlossen."},
        {"html": "<p>AT&amp;T and R&amp;D budgets rose 5% in Z&uuml;rich (see %20 below)</p>"},
    ]
    report = _check(guard, public)
    assert report.by_rule == {ALLOWED: 4}
