"""The gate's analysis of one text: its recognizers called directly, presidio's full
``AnalyzerEngine.analyze`` only where context words could change the outcome.

Imported only by :class:`kairo_guard.detect.pii.PiiGate`, after it has checked that the
``pii`` extra is installed.

``AnalyzerEngine.analyze`` builds presidio's NLP artifacts (token lists, keywords) and
runs the context enhancer over every result, for every text. Context words only ever
*raise* a score, so they can change an outcome only for a result that scored below its
threshold; with the default thresholds no recognizer of the gate ever does. So results
are computed directly, and the full analysis (same registry, same NLP engine, same
thresholds) runs only for a text with such a result.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerResult
from spacy.language import Language
from spacy.tokens import Doc

from kairo_guard.detect.pii_recognizers import LANGUAGE, GateNlpEngine, build_registry

#: A text with more results than this, one of them below its threshold, is not run
#: through the context enhancer (its cost grows with results times tokens): all its
#: results count, whatever their score. Fail closed, and bounded.
MAX_RESULTS_FOR_CONTEXT = 64
PERSON = "PERSON"
PHONE = "PHONE_NUMBER"
_DIGIT_ENTITIES = frozenset({"CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS"})
_NEVER_IN_NAMES = re.compile(r"[0-9_=/:@#<>{}\[\]|\\]")
"""Characters no personal name holds: an NER "person" with one is an identifier
(``finish_reason``, ``sha256 9f...``, ``p95=168``), not a name."""


def could_be_a_name(text: str) -> bool:
    """False for an NER PERSON span none of whose words could be part of a name (each
    holds a character no name holds).

    A span with one plausible word stays whole (``user:Maria`` is still a person), and
    lowercase or single-word spans stay too (a name may be written in lowercase): the
    gate errs on the side of blocking.
    """
    return any(
        _NEVER_IN_NAMES.search(word) is None and any(c.isalpha() for c in word)
        for word in text.split()
    )


class GateAnalyzer:
    """Finds the gate's entities in one text whose (NER-tagged or not) Doc is given.

    Args:
        nlp: the loaded NER pipeline.
        entities: entity types the gate looks for.
        thresholds: minimum score per entity type.
        allow_list: literal strings that are never PII.
    """

    def __init__(
        self,
        nlp: Language,
        entities: Sequence[str],
        thresholds: Mapping[str, float],
        allow_list: Collection[str] = frozenset(),
    ):
        self.engine = GateNlpEngine(nlp)
        self.registry = build_registry(entities)
        self.engine_analyzer = AnalyzerEngine(
            registry=self.registry, nlp_engine=self.engine, supported_languages=[LANGUAGE]
        )
        self.thresholds = dict(thresholds)
        self.allow_list = frozenset(allow_list)
        self._min_threshold = min(self.thresholds.values(), default=0.0)
        self._by_entity: dict[str, EntityRecognizer] = {}
        for recognizer in self.registry.recognizers:
            if not recognizer.is_loaded:
                recognizer.load()
                recognizer.is_loaded = True
            for entity in recognizer.supported_entities:
                self._by_entity[entity] = recognizer
        self._person_score = float(self.engine.ner_model_configuration.default_score or 0.85)

    def analyze(self, *, text: str, doc: Doc, entities: Sequence[str]) -> list[RecognizerResult]:
        """Return the results for ``entities`` in ``text`` at or above their thresholds.

        ``doc`` is the text's Doc; its ``ents`` are read for PERSON.
        """
        results: list[RecognizerResult] = []
        for entity in sorted(entities, key=lambda e: e == PHONE):  # phone numbers last
            if entity == PERSON:
                results.extend(self._people(doc))
            elif entity == PHONE:
                found = self._by_entity[PHONE].analyze_outside(  # type: ignore[attr-defined]
                    text, [PHONE], self._digit_spans(text, results)
                )
                results.extend(found)
            else:
                # None: no recognizer but PERSON's reads the NLP artifacts
                found = self._by_entity[entity].analyze(text, [entity], None)  # type: ignore[arg-type]
                results.extend(found or ())
        if any(r.score < self.thresholds[r.entity_type] for r in results):
            if len(results) > MAX_RESULTS_FOR_CONTEXT:
                return EntityRecognizer.remove_duplicates(results)  # every result counts
            results = self._with_context(text, doc, entities)
        kept = [r for r in results if r.score >= self.thresholds[r.entity_type]]
        return EntityRecognizer.remove_duplicates(kept)

    def _digit_spans(self, text: str, results: list[RecognizerResult]) -> list[tuple[int, int]]:
        """Spans already found as cards, IBANs or IP addresses (above their thresholds,
        not allow-listed): the text is blocked for them anyway, so the digit groups in
        them are not matched again as phone numbers (the costliest matching)."""
        return [
            (r.start, r.end)
            for r in results
            if r.entity_type in _DIGIT_ENTITIES
            and r.score >= self.thresholds[r.entity_type]
            and text[r.start : r.end].strip() not in self.allow_list
        ]

    def _people(self, doc: Doc) -> list[RecognizerResult]:
        """PERSON results from the Doc's entities, as presidio's SpacyRecognizer makes them."""
        spacy_recognizer = self._by_entity[PERSON]
        meta: dict[str, Any] = {
            RecognizerResult.RECOGNIZER_NAME_KEY: spacy_recognizer.name,  # type: ignore[has-type]
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: spacy_recognizer.id,
        }
        return [
            RecognizerResult(PERSON, ent.start_char, ent.end_char, self._person_score, None, meta)  # type: ignore[arg-type]
            for ent in doc.ents
            if ent.label_ == PERSON and could_be_a_name(ent.text)
        ]

    def _with_context(self, text: str, doc: Doc, entities: Sequence[str]) -> list[RecognizerResult]:
        """presidio's full analysis, context words included."""
        results: list[RecognizerResult] = self.engine_analyzer.analyze(
            text=text,
            language=LANGUAGE,
            entities=list(entities),
            nlp_artifacts=self.engine.artifacts(doc),
            score_threshold=self._min_threshold,
        )
        return results
