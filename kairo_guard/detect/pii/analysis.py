"""The gate's analysis of texts in this process: :class:`GateAnalyzer`.

Each text is tokenized in chunks, NER runs (batched) only where a name can be, and the
recognizers a text could match at all are called directly: presidio's full
``AnalyzerEngine.analyze`` runs only where context words could change the outcome.
``AnalyzerEngine.analyze`` builds presidio's NLP artifacts (token lists, keywords) and
runs the context enhancer over every result, for every text. Context words only ever
*raise* a score, so they can change an outcome only for a result that scored below its
threshold; with the default thresholds no recognizer of the gate ever does. So results
are computed directly, and the full analysis (same registry, same NLP engine, same
thresholds) runs only for a text with such a result.

Imported only by :class:`kairo_guard.detect.pii.gate.PiiGate`, after it has checked that
the ``pii`` extra is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NamedTuple

from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerResult
from spacy.language import Language
from spacy.tokens import Doc

from kairo_guard.detect.pii.prefilters import (
    GUARD_ERROR,
    GUARD_TOO_LONG,
    MAX_PHONE_WINDOW_CHARS,
    chunk_bounds,
    could_be_a_name,
    may_contain_name,
    phone_window_chars,
    possible_entities,
)
from kairo_guard.detect.pii.recognizers import LANGUAGE, GateNlpEngine, build_registry

#: A text with more results than this, one of them below its threshold, is not run
#: through the context enhancer (its cost grows with results times tokens): all its
#: results count, whatever their score. Fail closed, and bounded.
MAX_RESULTS_FOR_CONTEXT = 64
PERSON = "PERSON"
PHONE = "PHONE_NUMBER"
_DIGIT_ENTITIES = frozenset({"CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS"})


class Limits(NamedTuple):
    """The gate's bounds on the work one text may cost (see :class:`PiiGate`)."""

    max_chars: int
    max_ner_tokens: int
    chunk_chars: int
    batch_size: int


class GateAnalyzer:
    """Finds the gate's entities in texts, in this process: chunks each text, runs NER
    (batched) only where a name can be, then the recognizers a text could match.

    Args:
        nlp: the loaded NER pipeline.
        entities: entity types the gate looks for.
        thresholds: minimum score per entity type.
        allow_list: literal strings that are never PII.
        limits: the bounds on one text's cost.
        name_free_words: lowercased words that are never part of a name.
    """

    def __init__(
        self,
        nlp: Language,
        entities: Sequence[str],
        thresholds: Mapping[str, float],
        allow_list: Collection[str],
        *,
        limits: Limits,
        name_free_words: frozenset[str],
    ):
        self.nlp, self.entities, self.limits = nlp, tuple(entities), limits
        self.name_free_words = name_free_words
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

    def analyse_texts(self, texts: Sequence[str]) -> list[list[Any] | str]:
        """Per text (all distinct), its results or a guard failure code."""
        out: list[list[Any] | str] = [GUARD_ERROR] * len(texts)
        docs: dict[int, Any] = {}
        for i, text in enumerate(texts):
            try:
                doc = self._tokenize(text)
            except Exception:  # noqa: BLE001 - fail closed: an unreadable text blocks
                doc = GUARD_ERROR
            if isinstance(doc, str):
                out[i] = doc
            elif doc is None:
                out[i] = GUARD_TOO_LONG
            else:
                docs[i] = doc
        self._run_ner(docs)
        for i, doc in docs.items():
            try:
                out[i] = self._results(texts[i], doc)
            except Exception:  # noqa: BLE001 - fail closed: never report an unanalysed text clean
                out[i] = GUARD_ERROR
        return out

    def _tokenize(self, text: str) -> Any:
        """Return the text's chunk Docs and whether NER must run on them, or None when
        over the bounds. Without NER the Docs are not made here: only a result whose
        score context words could raise needs them (then :meth:`_results` makes them),
        and the pattern recognizers read the text itself."""
        if not isinstance(text, str):
            raise TypeError(f"PII gate scans str, not {type(text).__name__}")
        if len(text) > self.limits.max_chars:
            return None
        needs_ner = PERSON in self.entities and may_contain_name(text, self.name_free_words)
        if not needs_ner:
            return (None, False)
        parts = self._chunk_docs(text)
        if sum(len(p) for p in parts) > self.limits.max_ner_tokens:
            return None
        return (parts, needs_ner)

    def _chunk_docs(self, text: str) -> list[Doc]:
        """The text tokenized, in chunks (spaCy's tokenizer is costly on long strings)."""
        return [
            self.nlp.make_doc(text[a:b]) for a, b in chunk_bounds(text, self.limits.chunk_chars)
        ]

    def _run_ner(self, docs: dict[int, Any]) -> None:
        """Run NER in place over every chunk that needs it, batched; on error, per text."""
        keys = [i for i, (_, needs_ner) in docs.items() if needs_ner]
        if not keys:
            return
        flat = [part for i in keys for part in docs[i][0]]
        try:
            done = list(self.nlp.pipe(flat, batch_size=self.limits.batch_size))
        except Exception:  # noqa: BLE001 - retried per text below, so one bad text blocks alone
            done = None
        pos = 0
        for i in keys:
            parts = docs[i][0]
            if done is not None:
                docs[i] = (done[pos : pos + len(parts)], True)
                pos += len(parts)
                continue
            try:
                docs[i] = ([self.nlp(p) for p in parts], True)
            except Exception:  # noqa: BLE001 - fail closed
                docs[i] = None  # analysed as GUARD_ERROR below

    def _results(self, text: str, doc: Any) -> list[Any] | str:
        """The text's results above the thresholds, or ``GUARD_TOO_LONG``."""
        if doc is None:
            raise RuntimeError("NER failed")
        parts, tagged = doc
        entities = possible_entities(text, self.entities)
        if not tagged and PERSON in entities:
            entities.remove(PERSON)  # NER skipped: no word in it could be a name
        if not entities:
            return []
        if PHONE in entities and phone_window_chars(text) > MAX_PHONE_WINDOW_CHARS:
            return GUARD_TOO_LONG

        def joined() -> Doc:
            docs = parts if parts is not None else self._chunk_docs(text)
            return docs[0] if len(docs) == 1 else Doc.from_docs(docs, ensure_whitespace=False)

        results = self.analyze(text=text, doc=joined, entities=entities)
        return [r for r in results if text[r.start : r.end].strip() not in self.allow_list]

    def analyze(
        self, *, text: str, doc: Callable[[], Doc], entities: Sequence[str]
    ) -> list[RecognizerResult]:
        """Return the results for ``entities`` in ``text`` at or above their thresholds.

        ``doc`` makes the text's Doc (its ``ents`` are read for PERSON), called only
        when PERSON is asked for or context words must be weighed.
        """
        results: list[RecognizerResult] = []
        for entity in sorted(entities, key=lambda e: e == PHONE):  # phone numbers last
            if entity == PERSON:
                results.extend(self._people(doc()))
            elif entity == PHONE:
                found = self._by_entity[PHONE].analyze_outside(  # type: ignore[attr-defined]
                    text, [PHONE], self._digit_spans(text, results)
                )
                results.extend(found)
            else:
                # None: no recognizer but PERSON's reads the NLP artifacts
                found = self._by_entity[entity].analyze(text, [entity], None)  # type: ignore[arg-type]
                results.extend(found or ())
        if any(self._context_may_lift(r) for r in results):
            if len(results) > MAX_RESULTS_FOR_CONTEXT:
                return EntityRecognizer.remove_duplicates(results)  # every result counts
            results = self._with_context(text, doc(), entities)
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

    def _context_may_lift(self, result: RecognizerResult) -> bool:
        """Whether context words could lift a result under its threshold to it: presidio
        raises a score by its context factor, to at least its floor, at most 1 (a very
        weak SSN pattern's 0.05 reaches 0.4 at most, under the default 0.5)."""
        threshold = self.thresholds[result.entity_type]
        if result.score >= threshold:
            return False
        enhancer = self.engine_analyzer.context_aware_enhancer
        lifted = max(result.score + enhancer.context_similarity_factor,
                     enhancer.min_score_with_context_similarity)  # fmt: skip
        return min(lifted, 1.0) >= threshold

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
