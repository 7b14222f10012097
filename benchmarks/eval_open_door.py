"""The open door: how much real public text operator vetting refuses, and what it catches.

Public records come from text shipped on this machine: Markdown, reStructuredText and
plain-text documentation, licences and package metadata under the virtualenv's
``site-packages`` and ``/usr/share`` (``doc``, ``common-licenses``). Each file gives its
paragraphs (40-5,000 characters) as records, and files of 5,000-60,000 characters also
whole, as long documents; ``--n`` records (default 10,000) are drawn with a fixed seed,
at least ``--long`` (default 500) of them long.

* **Refused**: each record, as ``{"text": ...}``, is vetted by the guard's own vetting
  (``Guard.seal_operator_data``: the operator data PII policy, the fingerprint net on
  an empty store) with the default configuration; refusals are counted by rule and
  entity type. Target: at most 0.5%. Throughput in MB/s of text, one process.
* **Planted**: identifiers of the kinds the operator policy looks for (email addresses,
  phone numbers, cards, IBANs, US social security numbers, API keys), taken from
  customer content sealed first (so indexed: the customer identifier index holds its
  addresses and numbers), planted in the middle of ``--planted`` public records, each
  written as the customer's text has it or (numbers) in another common format; caught
  when vetting refuses the record. Target: at least 99%. Names are not planted: the
  operator policy does not look for generic names and the index holds none yet.
* **Every address**: the refusals again with email addresses and phone numbers added to
  ``[pii] operator_entities`` (the default leaves them to the customer identifier
  index: refused only when a customer's content held them).
* **Stock**: presidio's ``AnalyzerEngine`` (full pipeline of the same spaCy model, its
  default recognizers, score 0.5) on ``--stock`` of the same records: the share it
  would refuse, and its throughput.

Run: ``.venv/bin/python benchmarks/eval_open_door.py [--n 10000] [--stock 1000]``.
A script, not a test: prints a report, exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""  # stock tldextract stays offline
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine_info

from kairo_guard import Guard, SignerKeys
from kairo_guard.core.exceptions import ContentRefused
from kairo_guard.core.keys import KeyRing
from kairo_guard.detect.pii.gate import OPERATOR_ENTITIES
from kairo_guard.ingest.apikeys import new_api_key

SUFFIXES = (".md", ".rst", ".txt")
NAMES = ("LICENSE", "LICENCE", "COPYING", "METADATA", "README", "copyright", "NOTICE")
MIN_PARA, MAX_PARA = 40, 5_000
MIN_LONG, MAX_LONG = 5_000, 60_000
PLANTS = {
    "EMAIL_ADDRESS": lambda r: (
        f"{r.choice(['maria', 'j.okafor', 'li.wei'])}"
        f"{r.randrange(10, 99)}@{r.choice(['gmail.com', 'acme-corp.io', 'outlook.com'])}"
    ),
    "PHONE_NUMBER": lambda r: (
        f"+1 {r.randrange(201, 989)} {r.randrange(200, 999)} {r.randrange(1000, 9999)}"
    ),
    "CREDIT_CARD": lambda r: r.choice(
        ["4111 1111 1111 1111", "5500 0000 0000 0004", "3782 822463 10005"]
    ),
    "IBAN_CODE": lambda r: r.choice(["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000"]),
    "US_SSN": lambda r: f"{r.randrange(100, 665)}-{r.randrange(10, 99)}-{r.randrange(1000, 9999)}",
    "API_KEY": lambda r: (
        "ghp_" + "".join(r.choice("abcdefghijkLMNOPQ0123456789") for _ in range(36))
    ),
}


def public_files() -> Iterator[Path]:
    """Text files shipped on this machine: documentation, licences, package metadata."""
    roots = [Path(sys.prefix) / "lib", Path("/usr/share/doc"), Path("/usr/share/common-licenses")]
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and (path.suffix in SUFFIXES or path.name.startswith(NAMES)):
                yield path


def records(n: int, long: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` public records (paragraphs and long documents) and where each came from."""
    paragraphs: list[tuple[str, str]] = []
    documents: list[tuple[str, str]] = []
    for path in public_files():
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if MIN_LONG <= len(text) <= MAX_LONG:
            documents.append((text, str(path)))
        for para in re.split(r"\n\s*\n", text):
            para = para.strip()
            if MIN_PARA <= len(para) <= MAX_PARA:
                paragraphs.append((para, str(path)))
    rng = random.Random(seed)
    chosen = rng.sample(documents, min(long, len(documents)))
    seen = {t for t, _ in chosen}
    distinct = [p for p in dict(paragraphs).items() if p[0] not in seen]
    chosen += rng.sample(distinct, min(n - len(chosen), len(distinct)))
    rng.shuffle(chosen)
    return [t for t, _ in chosen], [s for _, s in chosen]


SHARD = 1_000
"""Records vetted together, as one shard (``kairo-guard label`` vets 10,000 at once)."""


def vet_all(guard: Guard, texts: list[str]) -> tuple[Counter[str], list[int], float]:
    """Vet the texts in shards; return refusals by rule and entity, indices refused,
    seconds."""
    refused: Counter[str] = Counter()
    which: list[int] = []
    start = time.perf_counter()
    for at in range(0, len(texts), SHARD):
        batch = [{"text": t} for t in texts[at : at + SHARD]]
        for i, outcome in enumerate(guard.vetting.vet(batch, source="public-docs"), start=at):
            if isinstance(outcome, str):
                continue
            if not isinstance(outcome, ContentRefused):
                raise outcome
            kinds = re.findall(r"[A-Z_]{5,}", str(outcome)) or ["-"]
            refused[f"{outcome.rule} {','.join(sorted(set(kinds)))}"] += 1
            which.append(i)
    return refused, which, time.perf_counter() - start


def caught_plants(guard: Guard, plants: list[tuple[str, str]]) -> Counter[str]:
    """How many planted texts of each kind vetting refuses (vetted in shards too)."""
    _, which, _ = vet_all(guard, [text for text, _ in plants])
    return Counter(plants[i][1] for i in which)


def planted(
    texts: list[str], count: int, seed: int
) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """``count`` public texts with a customer's identifier planted mid-text, and the
    customer records the identifiers come from."""
    rng = random.Random(seed)
    kinds = sorted(PLANTS)
    out, customer = [], []
    for i in range(count):
        text, kind = rng.choice(texts), kinds[i % len(kinds)]
        value = PLANTS[kind](rng)  # type: ignore[no-untyped-call]
        customer.append({"note": f"Customer record {i}: reach them at {value} (verified)."})
        if kind == "PHONE_NUMBER" and i % 2:  # written as another text would: 415-555-0132
            value = "-".join(value.split()[1:])
        cut = text.rfind(" ", 0, len(text) // 2) + 1
        out.append((f"{text[:cut]}contact {value} for this {text[cut:]}", kind))
    return out, customer


def stock(texts: list[str]) -> tuple[float, float]:
    """Share of texts stock presidio finds anything in (score >= 0.5), and seconds."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from kairo_guard.detect.pii.gate import DEFAULT_MODEL

    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": DEFAULT_MODEL}],
        }
    )
    engine = AnalyzerEngine(nlp_engine=provider.create_engine())
    engine.nlp_engine.nlp["en"].max_length = MAX_LONG + 1  # type: ignore[attr-defined]
    start = time.perf_counter()
    hits = sum(bool(engine.analyze(text=t, language="en", score_threshold=0.5)) for t in texts)
    return hits / len(texts), time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--long", type=int, default=500)
    p.add_argument("--planted", type=int, default=1_200)
    p.add_argument("--stock", type=int, default=1_000)
    p.add_argument("--seed", type=int, default=20261206)
    p.add_argument("--show", type=int, default=10, help="refused records to show (source)")
    o = p.parse_args()
    print(machine_info.machine(), flush=True)
    texts, sources = records(o.n, o.long, o.seed)
    size = sum(len(t.encode()) for t in texts)
    longs = sum(len(t) >= MIN_LONG for t in texts)
    print(f"{len(texts):,} public records ({longs:,} of 5,000+ characters), {size / 1e6:.1f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        guard: Any = Guard(
            home=Path(tmp) / "state", key=KeyRing.generate(), env={}, signer=SignerKeys.generate()
        )
        guard.seal_operator_data({"text": "warm-up"}, source="public-docs")
        new_api_key(guard.store, "acme")  # the customer whose identifiers are planted
        refused, which, secs = vet_all(guard, texts)
        total = sum(refused.values())
        print(f"vetting (operator policy): refused {total:,} of {len(texts):,} = "
              f"{100 * total / len(texts):.2f}% (target <= 0.5%); {size / 1e6 / secs:.2f} MB/s, "
              f"{len(texts) / secs:,.0f} records/s")  # fmt: skip
        for reason, n in refused.most_common():
            print(f"  {n:6,}  {reason}")
        for i in which[: o.show]:
            print(f"  refused: {sources[i]} ({len(texts[i]):,} chars)")
        plants, customer = planted(texts, o.planted, o.seed + 1)
        for record in customer:  # the customer's content, sealed and so indexed
            guard.seal(record, tenant="acme", source="crm")
        caught = caught_plants(guard, plants)
        per = len(plants) // len(PLANTS)
        print(f"planted identifiers caught: {sum(caught.values()):,} of {len(plants):,} = "
              f"{100 * sum(caught.values()) / len(plants):.2f}% (target >= 99%)")  # fmt: skip
        for kind in sorted(PLANTS):
            print(f"  {kind:14} {caught[kind]:5,} of {per:,}")
        guard.close()
        home = Path(tmp) / "every-address"
        home.mkdir()
        kinds = [*OPERATOR_ENTITIES, "EMAIL_ADDRESS", "PHONE_NUMBER"]
        (home / "kairo-guard.toml").write_text(f"[pii]\noperator_entities = {json.dumps(kinds)}\n")
        guard = Guard(home=home, key=KeyRing.generate(), env={}, signer=SignerKeys.generate())
        new_api_key(guard.store, "acme")
        refused, which, secs = vet_all(guard, texts)
        total = sum(refused.values())
        print(f"refusing every address and number: refused {total:,} = "
              f"{100 * total / len(texts):.2f}%; {size / 1e6 / secs:.2f} MB/s")  # fmt: skip
        for reason, n in refused.most_common():
            print(f"  {n:6,}  {reason}")
        for record in customer:
            guard.seal(record, tenant="acme", source="crm")
        caught = caught_plants(guard, plants)
        print(f"  planted caught: {sum(caught.values()):,} of {len(plants):,} = "
              f"{100 * sum(caught.values()) / len(plants):.2f}%; "
              + ", ".join(f"{k} {caught[k]}" for k in sorted(PLANTS)))  # fmt: skip
        guard.close()
    if o.stock:
        sample = texts[: o.stock]
        share, secs = stock(sample)
        mb = sum(len(t.encode()) for t in sample) / 1e6
        print(f"stock presidio on {len(sample):,} of the same records: would refuse "
              f"{100 * share:.1f}%; {mb / secs:.2f} MB/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
