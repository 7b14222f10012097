"""The customer identifier index: a customer's email addresses and phone numbers,
caught by exact match when they turn up in operator data.

When customer content is indexed, the email addresses and phone numbers in its text
are kept as keyed 64-bit hashes of their normalized form (an address lowercased; a
number as its last ten digits), beside the text's fingerprints and under the same
tenant, so erasure forgets them with the rest. Vetting operator data (and a shared
sink holding operator data) looks up the addresses and numbers of the operator text:
one that a customer's content held is refused (rule ``pii.customer-identifier``),
naming where and what kind, never the value. An address or number no customer sent
(a maintainer's address in a licence, a project's support line) passes: exact data
match, as data loss prevention products do, rather than refusing every address public
text holds.

What is not indexed: names (finding them in customer content takes a name recognizer
on every ingested body), numbers of fewer than ten digits, and content indexed before
this index existed.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from kairo_guard.core.exceptions import ContentRefused
from kairo_guard.core.policy import Decision
from kairo_guard.core.types import Outcome, TenantId
from kairo_guard.detect.fields import Field, json_path, record_fields, record_strings
from kairo_guard.detect.prefilter import Prefilter, sorted_unique
from kairo_guard.detect.shapes import phone_runs

CUSTOMER_IDENTIFIER_RULE = "pii.customer-identifier"
EMAIL, PHONE = "EMAIL_ADDRESS", "PHONE_NUMBER"
MAX_PATHS_IN_REASON = 5
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d \t()./-]{8,24}\d(?![\w])")
_NOT_DIGIT = re.compile(r"\D")
# dot-separated digit groups that are not a phone number's (3.3.4 and the like): an IPv4
# address, a version (a group of one digit)
_DOTTED = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|(?:\d+\.)*\d\.\d+(?:\.\d+)*|\d+(?:\.\d+)*\.\d")
_MIN_DIGITS, _MAX_DIGITS, _KEPT_DIGITS = 10, 15, 10
_SHORTEST_MATCH = 10  # characters of the shortest _PHONE match: a digit, eight, a digit


def _phone_matches(
    text: str, spans: list[tuple[int, int]] | None = None
) -> Iterator[re.Match[str]]:
    """``_PHONE.finditer(text)``, run only over the runs of characters a match is made
    of that hold two digits (``spans``: :func:`~kairo_guard.detect.shapes.phone_runs`,
    found natively, when the caller has them): a match lies inside one run,
    look-behind sees before a run's start, and one character past its end lets
    look-ahead see what follows, so the matches are the same, without scanning the
    prose between (most of a long text)."""
    n = len(text)
    for start, end in phone_runs(text, _SHORTEST_MATCH) if spans is None else spans:
        yield from _PHONE.finditer(text, start, min(n, end + 1))


def identifiers_in(
    text: str, spans: list[tuple[int, int]] | None = None
) -> Iterator[tuple[str, bytes]]:
    """The email addresses and phone numbers of ``text``: ``(kind, normalized form)``.

    ``spans``: ``phone_runs(text, 10)`` when the caller has them already."""
    if "@" in text:
        for found in _EMAIL.finditer(text):
            yield EMAIL, b"e:" + found.group().lower().encode("utf-8")
    for found in _phone_matches(text, spans):
        number = found.group()
        if "." in number and _DOTTED.fullmatch(number.strip()):
            continue  # an IP address or a version, not a number to call
        digits = _NOT_DIGIT.sub("", number)
        if _MIN_DIGITS <= len(digits) <= _MAX_DIGITS:
            yield PHONE, b"p:" + digits[-_KEPT_DIGITS:].encode("ascii")


class CustomerIdentifiers:
    """Keyed hashes of identifiers (see the module docstring).

    Args:
        key: the secret the hashes are keyed with (the guard's identifier subkey): a
            hash cannot be computed, nor an address guessed from it, without it.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the identifier key must be at least 16 bytes")
        self._key = key[:64]
        self._local = threading.local()  # what :meth:`remembering` keeps, per thread

    def found_in(self, text: str) -> list[tuple[str, int]]:
        """``(kind, hash)`` of each identifier in ``text``, in order."""
        recent: dict[str, list[tuple[str, int]]] | None = getattr(self._local, "recent", None)
        if recent is not None and (found := recent.get(text)) is not None:
            return found
        spans = phone_runs(text, _SHORTEST_MATCH)
        if "@" not in text and not spans:
            found = []  # nothing to find (most text)
        else:
            found = [(k, self.hash(n)) for k, n in identifiers_in(text, spans)]
        if recent is not None:
            recent[text] = found
        return found

    @contextmanager
    def remembering(self) -> Iterator[None]:
        """Within the block, in this thread, a text is read once however often it is
        asked about (vetting asks the check, then the shard's table); nothing is kept
        after it (the indexer, which reads each body once, keeps nothing at all)."""
        self._local.recent = {}
        try:
            yield
        finally:
            self._local.recent = None

    def hash(self, normalized: bytes) -> int:
        """The keyed 64-bit hash of a normalized identifier (signed, as SQL stores it)."""
        digest = hashlib.blake2b(normalized, key=self._key, digest_size=8).digest()
        return int.from_bytes(digest, "little", signed=True)

    def of_text(self, text: str) -> set[int]:
        """The hashes of the identifiers in ``text`` (what indexing adds)."""
        return {h for _, h in self.found_in(text)}

    def of_record(self, content: object) -> set[int]:
        """The hashes of the identifiers in each string of a record (keys included)."""
        found: set[int] = set()
        for text in record_strings(content):
            found |= self.of_text(text)
        return found

    def of_fields(self, fields: Collection[Field]) -> dict[int, tuple[Field, str]]:
        """Each identifier hash of the fields, with the first field and kind it is in."""
        found: dict[int, tuple[Field, str]] = {}
        for field in fields:
            for kind, hashed in self.found_in(field.text):
                found.setdefault(hashed, (field, kind))
        return found


class CustomerIdentifierCheck:
    """Refuses operator data holding an identifier a customer's content held.

    Args:
        identifiers: the keyed hashes (:class:`CustomerIdentifiers`).
        match: hashes -> the tenants each was indexed for (the store's
            ``match_fingerprints``); hashes no tenant has are absent.
        prefilter: every indexed fingerprint in memory (the fingerprint index's): only
            hashes it may hold are asked of the store. At a sink check the net has
            refreshed it for the batch; vetting refreshes it first.
        allow: addresses and numbers that are never a customer's, though customers'
            content holds them (the operator's own support address: ``[pii]
            allow_list``).
    """

    def __init__(
        self,
        identifiers: CustomerIdentifiers,
        match: Callable[[Collection[int]], Mapping[int, Collection[TenantId]]],
        prefilter: Prefilter | None = None,
        allow: Iterable[str] = (),
    ) -> None:
        self._identifiers = identifiers
        self._match = match
        self._prefilter = prefilter
        self._allowed = {
            identifiers.hash(normalized) for text in allow for _, normalized in identifiers_in(text)
        }

    def __call__(self, content: object) -> Decision | None:
        """The block for ``content`` holding a customer's identifier, else None."""
        if not any(self._identifiers.found_in(t) for t in record_strings(content)):
            return None  # no address or number in any string: most records
        fields = [f for f in record_fields(content) if f.text]
        found = self._identifiers.of_fields(fields)
        for allowed in self._allowed.intersection(found):
            del found[allowed]
        if not found:
            return None
        probe = list(found)
        prefilter = self._prefilter
        if prefilter is not None:
            if not prefilter.loaded:
                prefilter.refresh()
            hashes = sorted_unique(probe)
            probe = [int(h) for h in hashes[prefilter.contains(hashes)]]
            if not probe:  # none of them was ever indexed
                return None
        matched = self._match(probe)
        hits = sorted({found[h] for h in matched if matched[h]}, key=lambda fk: fields.index(fk[0]))
        if not hits:
            return None
        withheld = {str(f.path[-1]) for f, _ in hits if f.is_key and f.path}  # keys hold them
        parts = [
            f"{kind} at {json_path(field.path, withheld)}" + (" (a key)" * field.is_key)
            for field, kind in hits[:MAX_PATHS_IN_REASON]
        ]
        more = len(hits) - MAX_PATHS_IN_REASON
        reason = "text holds a customer's identifier: " + "; ".join(parts)
        return Decision(
            Outcome.BLOCK,
            CUSTOMER_IDENTIFIER_RULE,
            reason + (f"; and {more} more" if more > 0 else ""),
        )

    def refusals(self, contents: Sequence[object]) -> list[ContentRefused | None]:
        """Per record, the refusal for a customer's identifier in it, or None (vetting:
        what was indexed up to now counts)."""
        if self._prefilter is not None:
            self._prefilter.refresh()
        decisions = [self(content) for content in contents]
        return [None if d is None else ContentRefused(d.rule, d.reason) for d in decisions]
