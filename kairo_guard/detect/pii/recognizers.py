"""Presidio recognizers and NLP engine of the PII gate, all offline.

Imported only by :class:`kairo_guard.detect.pii.gate.PiiGate`, after it has checked that the
``pii`` extra is installed: this module imports presidio, spaCy and tldextract at top.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from typing import Any

import tldextract
from presidio_analyzer import (
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    SpacyRecognizer,
    UrlRecognizer,
    UsSsnRecognizer,
)
from spacy.language import Language
from spacy.tokens import Doc

from kairo_guard.detect.pii.prefilters import (
    MIN_PHONE_DIGITS,
    SECRET_RUN_MIN,
    phone_windows,
    shannon_entropy,
)
from kairo_guard.detect.shapes import runs

LANGUAGE = "en"


API_KEY_ENTITY = "API_KEY"
_PERSON_LABELS = frozenset({"PERSON", "PER"})
_DIGIT = re.compile(r"\d")


def offline_tld_extractor() -> tldextract.TLDExtract:
    """Return a TLD extractor that uses only the public suffix list bundled with it.

    No suffix-list URL (so no HTTP fetch) and no cache directory (so no disk writes).
    """
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer, validating domains with the bundled suffix list.

    The stock recognizer calls the module-level ``tldextract.extract``, which fetches
    the public suffix list from the internet on first use.
    """

    def __init__(self, extractor: tldextract.TLDExtract) -> None:
        super().__init__()
        self._extract = extractor

    def validate_result(self, pattern_text: str) -> bool:
        """Return whether the address ends in a known public suffix."""
        return self._extract(pattern_text).fqdn != ""


class PathUrlRecognizer(UrlRecognizer):
    """Presidio's URL recognizer, counting only URLs with a path (``host/...``).

    A bare host name (``api.example.com``) says little about a person; a path can
    carry ids, names and tokens. Presidio's patterns stop at a port
    (``host:8080/path`` yields only ``host``), so one pattern is added for URLs with a
    port.
    """

    PORT_PATTERN = Pattern(
        "URL with port",
        r"(?i)(?:https?://)?(?:[a-z0-9-]+\.)+[a-z]{2,63}:\d{1,5}/[^\s()<>\"']*",
        0.6,
    )
    _HOST_THEN_PATH = re.compile(
        r"^(?:[a-z][a-z0-9+.-]*://)?[^/\s:]+(?::\d+)?/[^\s]*[^\s/]", re.IGNORECASE
    )

    def __init__(self) -> None:
        super().__init__(patterns=[*UrlRecognizer.PATTERNS, self.PORT_PATTERN])

    def invalidate_result(self, pattern_text: str) -> bool:
        """Return True (drop the match) when the URL has no non-empty path."""
        return self._HOST_THEN_PATH.match(pattern_text.strip("\"'")) is None


class WindowedPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recognizer, run only on the windows where a number can be.

    The stock recognizer runs phonenumbers' matcher over the whole text once per
    region, and the matcher parses every digit group it meets (counts, dates, ids):
    most of a scan's time. Matching inside :func:`~kairo_guard.detect.pii.prefilters.phone_windows`
    (clusters of at least 7 digits, with the context the matcher reads around a
    number) finds the same numbers, with the same regions, at a fraction of the cost.
    """

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:  # the stock signature: artifacts default to None
        """Return the phone numbers in ``text``, with offsets into ``text``."""
        return self.analyze_outside(text, entities, ())

    def analyze_outside(
        self, text: str, entities: list[str], skip: Sequence[tuple[int, int]]
    ) -> list[RecognizerResult]:
        """:meth:`analyze`, leaving out digit groups wholly inside a ``skip`` span."""
        results: list[RecognizerResult] = []
        for start, end in phone_windows(text, skip=skip):
            for result in super().analyze(text[start:end], entities, None):  # type: ignore[arg-type]
                result.start += start
                result.end += start
                if len(_DIGIT.findall(text, result.start, result.end)) >= MIN_PHONE_DIGITS:
                    results.append(result)  # shorter ones are counts, not numbers
        return results


class SecretRecognizer(PatternRecognizer):
    """API-key-like secrets: well-known key formats and long high-entropy tokens."""

    PATTERNS = (
        Pattern("OpenAI-style key", r"\bsk-(?:proj-|live-|test-)?[A-Za-z0-9_-]{20,}", 0.9),
        Pattern("AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.9),
        Pattern("GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{40,})", 0.9),
        Pattern("Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", 0.9),
        Pattern("Stripe key", r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}", 0.9),
        Pattern("kairo-guard API key", r"\bkgk\.[0-9a-f]{16}\.[A-Za-z0-9_-]{20,}", 0.95),
        Pattern("JWT", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", 0.9),
        Pattern("High-entropy token", r"(?<![\w+/=-])[A-Za-z0-9+/_-]{32,}={0,2}(?![\w+/=-])", 0.6),
    )
    # Generic tokens must mix upper, lower and digits and be dense in information, so
    # hex digests, UUIDs, trace ids and long identifiers do not count as secrets.
    _MIN_ENTROPY = 4.0
    _MIXED = (re.compile(r"[a-z]"), re.compile(r"[A-Z]"), re.compile(r"\d"))

    def __init__(self) -> None:
        super().__init__(
            supported_entity=API_KEY_ENTITY,
            patterns=list(self.PATTERNS),
            context=["key", "token", "secret", "password", "apikey", "authorization"],
            supported_language=LANGUAGE,
            name=self.NAME,
        )

    # Every pattern above matches only inside a run of at least 15 characters of this
    # class (the shortest: a Slack token, "xoxb-" and ten more), so each is run on the
    # runs alone, with the standard library's engine and presidio's flags: the same
    # matches (a run is maximal, so the characters around it are none of the class and
    # every boundary and look-around sees the same), without presidio's per-pattern
    # timing and its timeout-checking engine over the whole text (a third of vetting).
    _FLAGS = re.DOTALL | re.MULTILINE | re.IGNORECASE
    _COMPILED = tuple(
        (p, re.compile(p.regex, re.DOTALL | re.MULTILINE | re.IGNORECASE)) for p in PATTERNS
    )
    NAME = "SecretRecognizer"
    # Each specific format starts with one of these (case-insensitive, as presidio
    # matches); the generic token (the last pattern) is at least 32 characters long.
    _PREFIX = re.compile(
        r"sk-|akia|asia|gh[pousr]_|github_pat_|xox[abposr]-|[rs]k_(?:live|test)_|kgk\.|eyj",
        re.IGNORECASE,
    )
    _GENERIC_MIN = 32

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        """Presidio's pattern analysis, run on the text's candidate runs only."""
        results: list[RecognizerResult] = []
        specific, generic = self._COMPILED[:-1], self._COMPILED[-1:]
        for start, end in runs(text, SECRET_RUN_MIN):
            patterns = specific if self._PREFIX.search(text, start, end) else ()
            if end - start >= self._GENERIC_MIN:
                patterns = (*patterns, *generic)
            for pattern, regex in patterns:
                for match in regex.finditer(text, start, end):
                    token = match.group()
                    if token and not self.invalidate_result(token):
                        results.append(self._result(match.start(), match.end(), pattern))
        return EntityRecognizer.remove_duplicates(results)

    def _result(self, start: int, end: int, pattern: Pattern) -> RecognizerResult:
        explanation = self.build_regex_explanation(
            self.NAME,
            pattern.name,
            pattern.regex,
            pattern.score,
            None,  # type: ignore[arg-type]  # presidio passes None: no validation
            self._FLAGS,
        )
        return RecognizerResult(
            entity_type=API_KEY_ENTITY,
            start=start,
            end=end,
            score=pattern.score,
            analysis_explanation=explanation,
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: self.NAME,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
            },
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        """Return True (drop) for a generic token that is not mixed and dense enough."""
        if len(pattern_text) < 32 or not _TOKEN.fullmatch(pattern_text):
            return False  # a specific key format matched: keep it
        if pattern_text.startswith(("sk-", "sk_", "rk_", "gh", "xox", "eyJ", "AKIA", "ASIA")):
            return False
        if not all(p.search(pattern_text) for p in self._MIXED):
            return True  # not mixed: not key material (the cheap test first)
        if _path_like(pattern_text):
            return True  # /usr/share/common-licenses/GFDL-1, com/nodejs/node/blob/main
        return shannon_entropy(pattern_text) < self._MIN_ENTROPY


_WORDLIKE = re.compile(r"(?:[A-Z]?[a-z]+)+\d*|[A-Z]+\d*|[a-z0-9]+|\d+")
_WORD = re.compile(r"[a-z]{3,}")
_PART = re.compile(r"[-_.+]")
_TOKEN = re.compile(r"[A-Za-z0-9+/_=-]+")


@functools.lru_cache(maxsize=8192)  # paths repeat across a document set's records
def _path_like(token: str) -> bool:
    """True for a token that is a path of words (``cpan/CPAN-Meta/lib/Meta_1_0``): at
    least three segments made only of word-like parts (a word or CamelCase words, an
    upper-case word, lower case with digits, digits; split at ``-``, ``_``, ``.``, ``+``),
    one odd segment allowed among four or more (a commit hash), and at least two real
    words. Random key material mixes case within its parts, so it is almost never
    path-like (16 of 200,000 random 40-character base64 tokens, measured)."""
    segments = [s for s in token.rstrip("=").split("/") if s]
    if len(segments) < 3 or sum(bool(_WORD.search(s)) for s in segments) < 2:
        return False
    odd = sum(
        not all(_WORDLIKE.fullmatch(part) for part in _PART.split(s) if part) for s in segments
    )
    return odd == 0 or (odd == 1 and len(segments) >= 4)


def build_registry(entities: Collection[str]) -> RecognizerRegistry:
    """Return a registry holding one recognizer per requested entity, nothing else."""
    factories: dict[str, Any] = {
        "PERSON": lambda: SpacyRecognizer(
            supported_language=LANGUAGE, supported_entities=["PERSON"]
        ),
        "EMAIL_ADDRESS": lambda: OfflineEmailRecognizer(offline_tld_extractor()),
        "PHONE_NUMBER": WindowedPhoneRecognizer,
        "CREDIT_CARD": CreditCardRecognizer,
        "IBAN_CODE": IbanRecognizer,
        "IP_ADDRESS": IpRecognizer,
        "URL": PathUrlRecognizer,
        API_KEY_ENTITY: SecretRecognizer,
        "US_SSN": UsSsnRecognizer,
    }
    recognizers: list[EntityRecognizer] = [factories[e]() for e in sorted(entities)]
    return RecognizerRegistry(recognizers=recognizers, supported_languages=[LANGUAGE])


class GateNlpEngine(SpacyNlpEngine):
    """A presidio NLP engine over an already loaded NER-only spaCy pipeline.

    The gate runs spaCy itself (batched, chunked); this engine only turns each Doc into
    presidio's ``NlpArtifacts``. The pipeline has no lemmatizer, so lowercased token
    text stands in for lemmas (presidio uses them to match context words).
    """

    def __init__(self, nlp: Language) -> None:
        super().__init__(models=[{"lang_code": LANGUAGE, "model_name": nlp.meta["name"]}])
        # The parent declares ``nlp`` as None until its own load(); ours is loaded.
        self.nlp = {LANGUAGE: nlp}  # type: ignore[assignment]

    def load(self) -> None:
        """Do nothing: the gate loaded the pipeline, and this engine never downloads."""

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        """Refuse: the gate always passes precomputed artifacts."""
        raise RuntimeError("GateNlpEngine.process_text: the gate passes nlp_artifacts")

    def artifacts(self, doc: Doc) -> NlpArtifacts:
        """Return presidio's artifacts for ``doc``, keeping only person entities."""
        people = [ent for ent in doc.ents if ent.label_ in _PERSON_LABELS]
        return NlpArtifacts(
            entities=people,
            tokens=doc,
            tokens_indices=[token.idx for token in doc],
            lemmas=[token.lower_ for token in doc],
            nlp_engine=self,
            language=LANGUAGE,
            scores=[float(self.ner_model_configuration.default_score or 0.85)] * len(people),
        )

    def get_supported_entities(self) -> list[str]:
        """Return the one entity this engine's pipeline feeds: PERSON."""
        return ["PERSON"]
