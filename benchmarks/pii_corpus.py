"""A generated corpus of telemetry-like texts with planted PII and its ground truth.

Used by ``benchmarks/eval_pii.py`` and the slow side-by-side test in
``tests/detect/test_pii.py``. Deterministic for a seed: the same texts, in the same order,
with the same spans. Every planted value is well formed the way a detector may
require (cards pass the Luhn check, IBANs their mod-97 check, phone numbers are valid
for their region) because a value that is not is not the entity the type names.

Each text is 120-260 characters of error-message and log vocabulary. About 40% carry
no PII; the rest carry one or two planted values, each recorded as a
:class:`Planted` span ``[start, end)`` with its entity type.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

ENTITY_TYPES: tuple[str, ...] = (
    "API_KEY",
    "CREDIT_CARD",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "IP_ADDRESS",
    "PERSON",
    "PHONE_NUMBER",
    "URL",
)


@dataclass(frozen=True, slots=True)
class Planted:
    """One planted value: its entity type and span in the text."""

    entity_type: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One text and the PII planted in it (empty for a clean text)."""

    text: str
    planted: tuple[Planted, ...]


FIRST = (
    "John", "Maria", "Wei", "Priya", "Olu", "Ahmed", "Sofia", "Liam", "Yuki", "Carlos",
    "Fatima", "Noah", "Elena", "Hiroshi", "Amara", "Lukas", "Chloe", "Mateo", "Aisha",
    "Oliver", "Ingrid", "Rahul", "Grace", "Dmitri", "Zanele", "James", "Lucia", "Kwame",
)  # fmt: skip
LAST = (
    "Smith", "Garcia", "Zhang", "Patel", "Adeyemi", "Hassan", "Rossi", "O'Brien",
    "Tanaka", "Mendoza", "Khan", "Johnson", "Petrova", "Sato", "Okafor", "Muller",
    "Dubois", "Fernandez", "Rahman", "Williams", "Larsen", "Sharma", "Kim", "Ivanov",
    "Dlamini", "Brown", "Moreno", "Mensah",
)  # fmt: skip
DOMAINS = ("example.com", "acme.io", "corp.example.co.uk", "mail.example.org", "contoso.de")
# Region, then a format string whose ``#`` are filled with digits; kept if valid.
PHONE_FORMATS = (
    ("US", "+1 415-555-01##"),
    ("US", "(212) 555-01##"),
    ("US", "650.253.0###"),
    ("US", "+1 (646) 2##-####"),
    ("US", "312-9##-####"),
    ("GB", "+44 20 7946 0###"),
    ("GB", "020 7946 0###"),
    ("GB", "+44 7700 900###"),
    ("DE", "+49 30 9018####"),
    ("DE", "+49 89 636-#####"),
    ("FR", "+33 1 42 68 ## ##"),
    ("IN", "+91 98765 4####"),
    ("BR", "+55 11 91234-####"),
    ("CA", "+1 604-555-0###"),
    ("JP", "+81 3-3###-####"),
    ("AU", "+61 2 9###-####"),
)
CARD_PREFIXES = (("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
                 ("6011", 16))  # fmt: skip
IBAN_LAYOUTS = (  # country, BBAN layout: 'n' digit, 'a' upper letter, 'c' either
    ("DE", "nnnnnnnnnnnnnnnnnn"),
    ("GB", "aaaannnnnnnnnnnnnn"),
    ("FR", "nnnnnnnnnncccccccccccnn"),
    ("NL", "aaaannnnnnnnnn"),
    ("ES", "nnnnnnnnnnnnnnnnnnnn"),
    ("IT", "annnnnnnnnnccccccccccccc"),
)
HOSTS = ("files.example.com", "acme.example.org", "api.contoso.io", "cdn.example.net")

PII_TEMPLATES: dict[str, tuple[str, ...]] = {
    "PERSON": (
        "user {} could not open the shared notebook",
        "assigned to {} by the on-call rotation",
        "escalated by {} after the third timeout",
        "Agent run failed: {} has no seat in workspace {n}",
        "ticket opened on behalf of {}",
        "{} reported the outage at 09:{n2}",
    ),
    "EMAIL_ADDRESS": (
        "webhook delivery to {} failed: 550 mailbox full",
        "notify {} when the export finishes",
        "invite for {} bounced",
    ),
    "PHONE_NUMBER": (
        "SMS to {} bounced after {n} retries",
        "callback {} unreachable",
        "2FA code for {} not delivered",
    ),
    "CREDIT_CARD": (
        "Payment declined for card {} (code 51)",
        "charge failed, card={}",
        "tokenization error on {}",
    ),
    "IBAN_CODE": (
        "Payout rejected, IBAN {} invalid for SEPA",
        "refund to {} queued",
        "mandate for account {} expired",
    ),
    "IP_ADDRESS": (
        "Connection refused from {} on port 443",
        "client ip {} throttled",
        "peer={} reset the stream",
    ),
    "URL": (
        "fetch {} failed with 404",
        "GET {} returned 500",
        "redirect to {} blocked",
    ),
    "API_KEY": (
        "Auth failed with key {}",
        "token {} was rejected",
        "Authorization: Bearer {} expired",
    ),
}

CLEAN: tuple[Callable[[random.Random], str], ...] = (
    lambda r: f"POST /v1/chat/completions {r.choice([200, 429, 503])} {r.randint(5, 900)}ms",
    lambda r: f"model server TIMEOUT after {r.randint(1, 60)} s, retry {r.randint(1, 5)}",
    lambda r: f"queue_depth={r.randint(0, 5000)} workers={r.randint(1, 64)} status=OK",
    lambda r: f"upstream_error code=UNAVAILABLE after {r.randint(100, 30000)} ms",
    lambda r: f"trace {r.getrandbits(128):032x} span {r.getrandbits(64):016x}",
    lambda r: f"p50={r.uniform(1, 50):.1f} p95={r.uniform(50, 300):.1f} p99={r.randint(300, 900)}",
    lambda r: f"Rate limited: 429 Too Many Requests (limit {r.choice([60, 600, 6000])}/min)",
    lambda r: f"2026-11-{r.randint(10, 28)}T17:{r.randint(10, 59)}:18.123Z request completed",
    lambda r: "Timeout while contacting model server, retrying in 5 seconds",
    lambda r: f"sha256 {r.getrandbits(256):064x} mismatch",
    lambda r: f"build {r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 99)} deployed to eu-west",
    lambda r: f"GET https://api.example.com failed after {r.randint(1, 9)} attempts",
    lambda r: f"DEADLINE_EXCEEDED on route /v1/embeddings batch={r.randint(1, 256)}",
    lambda r: f"tokens={r.randint(1, 8192)} finish_reason=length model=large",
    lambda r: "Index rebuild finished; 0 documents skipped",
    lambda r: f"order {r.randint(10**7, 10**8)} retried {r.randint(1, 9)} times",
)  # fmt: skip


def _digits(r: random.Random, n: int) -> str:
    return "".join(r.choice(string.digits) for _ in range(n))


def _luhn_complete(partial: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return partial + str((10 - total % 10) % 10)


def credit_card(r: random.Random) -> str:
    """A Luhn-valid card number, compact or grouped by spaces or dashes."""
    prefix, length = r.choice(CARD_PREFIXES)
    number = _luhn_complete(prefix + _digits(r, length - len(prefix) - 1))
    sep = r.choice(["", " ", "-"])
    groups = [4, 6, 5] if length == 15 else [4, 4, 4, 4]
    out, pos = [], 0
    for g in groups:
        out.append(number[pos : pos + g])
        pos += g
    return sep.join(out)


def iban(r: random.Random) -> str:
    """An IBAN passing the mod-97 check, compact or in groups of four."""
    country, layout = r.choice(IBAN_LAYOUTS)
    pools = {"n": string.digits, "a": string.ascii_uppercase,
             "c": string.digits + string.ascii_uppercase}  # fmt: skip
    bban = "".join(r.choice(pools[c]) for c in layout)
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    value = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    if r.random() < 0.5:
        return value
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4))


def phone(r: random.Random) -> str:
    """A phone number valid for its region, in that region's usual writing."""
    import phonenumbers

    while True:
        region, fmt = r.choice(PHONE_FORMATS)
        value = "".join(r.choice(string.digits) if c == "#" else c for c in fmt)
        try:
            parsed = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return value


def ip_address(r: random.Random) -> str:
    """An IPv4 (mostly) or IPv6 address."""
    if r.random() < 0.75:
        return ".".join(str(r.randint(1, 254)) for _ in range(4))
    groups = [f"{r.getrandbits(16):x}" for _ in range(8)]
    if r.random() < 0.5:
        return ":".join(groups)
    return f"2001:db8::{groups[6]}:{groups[7]}"


def url(r: random.Random) -> str:
    """A URL with a path, with or without scheme, port and query."""
    host = r.choice(HOSTS)
    path = f"/u/{r.randint(1, 99999)}/{r.choice(['report.pdf', 'profile', 'export.csv'])}"
    kind = r.randrange(4)
    if kind == 0:
        return f"https://{host}{path}"
    if kind == 1:
        return f"http://{host}:8080{path}?v={r.randint(1, 9)}"
    if kind == 2:
        return f"www.{host}{path}"
    return f"{host}{path}"


def api_key(r: random.Random) -> str:
    """A secret in one of the well-known key formats, or a random token."""
    alnum = string.ascii_letters + string.digits
    kind = r.randrange(5)
    if kind == 0:
        return "sk-proj-" + "".join(r.choice(alnum) for _ in range(32))
    if kind == 1:
        return "AKIA" + "".join(r.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    if kind == 2:
        return "ghp_" + "".join(r.choice(alnum) for _ in range(36))
    if kind == 3:
        return "xoxb-" + _digits(r, 12) + "-" + "".join(r.choice(alnum) for _ in range(24))
    return "".join(r.choice(alnum) for _ in range(40))


def email(r: random.Random) -> str:
    """An email address, sometimes with a plus tag."""
    local = f"{r.choice(FIRST).lower()}.{r.choice(LAST).lower().replace(chr(39), '')}"
    if r.random() < 0.3:
        local += f"+{r.choice(['billing', 'ops', 'test'])}"
    return f"{local}@{r.choice(DOMAINS)}"


def person(r: random.Random) -> str:
    """A first and last name."""
    return f"{r.choice(FIRST)} {r.choice(LAST)}"


VALUES: dict[str, Callable[[random.Random], str]] = {
    "API_KEY": api_key,
    "CREDIT_CARD": credit_card,
    "EMAIL_ADDRESS": email,
    "IBAN_CODE": iban,
    "IP_ADDRESS": ip_address,
    "PERSON": person,
    "PHONE_NUMBER": phone,
    "URL": url,
}


def _planted_fragment(r: random.Random, entity: str) -> tuple[str, int, int]:
    template = r.choice(PII_TEMPLATES[entity])
    value = VALUES[entity](r)
    head, tail = template.split("{}", 1)
    head = head.format(n=r.randint(2, 99), n2=r.randint(10, 59))
    tail = tail.format(n=r.randint(2, 99), n2=r.randint(10, 59))
    return head + value + tail, len(head), len(head) + len(value)


def sample(r: random.Random, pii_share: float = 0.6) -> Sample:
    """One text: clean fragments, and with probability ``pii_share`` 1-2 planted values."""
    fragments: list[tuple[str, str | None, int, int]] = []
    if r.random() < pii_share:
        for entity in r.sample(ENTITY_TYPES, r.choice([1, 1, 1, 2])):
            frag, start, end = _planted_fragment(r, entity)
            fragments.append((frag, entity, start, end))
    while sum(len(f[0]) + 2 for f in fragments) < r.randint(120, 200):
        fragments.insert(r.randint(0, len(fragments)), (r.choice(CLEAN)(r), None, 0, 0))
    text, planted, pos = "", [], 0
    for frag, kind, start, end in fragments:
        if text:
            text += "; "
            pos += 2
        if kind is not None:
            planted.append(Planted(kind, pos + start, pos + end))
        text += frag
        pos += len(frag)
    return Sample(text + ".", tuple(planted))


def corpus(n: int, seed: int = 7) -> list[Sample]:
    """Return ``n`` samples, the same ones for the same seed."""
    r = random.Random(seed)
    return [sample(r) for _ in range(n)]


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected span: its entity type and ``[start, end)``."""

    entity_type: str
    start: int
    end: int


@dataclass(slots=True)
class Score:
    """Counts for one entity type over a corpus.

    A planted value is *found* when a detection of the same type overlaps its span by
    at least one character; a detection is *true* when it overlaps a planted value of
    its type, else it is a false positive.
    """

    planted: int = 0
    found: int = 0
    detections: int = 0
    true_detections: int = 0

    @property
    def recall(self) -> float:
        """Found planted values over planted values (1.0 when none was planted)."""
        return self.found / self.planted if self.planted else 1.0

    @property
    def precision(self) -> float:
        """True detections over detections (1.0 when nothing was detected)."""
        return self.true_detections / self.detections if self.detections else 1.0


def _overlaps(a: Planted | Detection, b: Planted | Detection) -> bool:
    return a.entity_type == b.entity_type and a.start < b.end and b.start < a.end


def score(
    samples: list[Sample], detections: list[list[Detection]], entity_types: tuple[str, ...]
) -> dict[str, Score]:
    """Score ``detections`` (one list per sample) against the planted ground truth."""
    scores = {e: Score() for e in entity_types}
    for smp, found in zip(samples, detections, strict=True):
        for p in smp.planted:
            if p.entity_type in scores:
                scores[p.entity_type].planted += 1
                scores[p.entity_type].found += any(_overlaps(p, d) for d in found)
        for d in found:
            if d.entity_type in scores:
                scores[d.entity_type].detections += 1
                scores[d.entity_type].true_detections += any(_overlaps(d, p) for p in smp.planted)
    return scores
