"""The fingerprint check at a shared sink: batched (prefilter + one query a batch) vs the
per-record path it replaces, side by side in one run; and its false positives.

Throughput (default). An index of generated tenant documents (``--fingerprints``, 1 M
rows by default, 100 tenants) in the guard's SQLite store; records of about 200 bytes
(``bench_scan.make_content``), 1% of them a 200-character excerpt of an indexed document.
Records/s on one pinned core, medians of ``--reps`` repeats, of:

* (a) ``CheckNet.decide`` over batches of 1,000 (what a sink check runs): reading check,
  fingerprints, prefilter, one store query a batch, thresholds, accumulation; for
  operator-sealed records (about to pass: evidence accumulates) and unlabeled ones
  (the net only names their owner);
* (b) the per-record path as it was: ``Fingerprinter.of_record`` and one
  ``Store.match_fingerprints`` query a record, then the thresholds;
* for information: the per-record API now (``FingerprintIndex.overlap``: a batch of one
  with a prefilter refresh), the batched lookup alone on fingerprints made beforehand,
  fingerprinting alone, and whole sink-check decisions (seal, policy, net) in batches
  (``SinkCheck.decide_batch``) and one at a time (``decide_parts``).

False positives (``--false-positives``). Public text shipped with the installed packages
(``tests/support/corpus.py``): 300 files (licences, READMEs, package documentation,
docstrings) indexed as 6 tenants' documents; 40,000 records of 150-400 characters cut
from every other file, checked as operator data (about to pass) through ``CheckNet`` in
batches of 1,000, both as 40 checks of 1,000 records and as one check of 40,000; blocks
counted by rule.

Run: ``.venv/bin/python benchmarks/bench_fingerprint_check.py`` (about a minute) and
``.venv/bin/python benchmarks/bench_fingerprint_check.py --false-positives``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import machine_info
import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("tests/support",)]
from bench_scan import library_fingerprint, make_content, pin
from corpus import RECORD_MIN_CHARS, customer_corpus, public_texts
from kg_testing import UNCHECKED, add_signer

from kairo_guard import Guard, KeyRing
from kairo_guard.core.content import content_digest
from kairo_guard.core.keys import PURPOSE_FINGERPRINT
from kairo_guard.core.types import SEAL_FIELD, DataClass
from kairo_guard.detect.accumulation import ACCUMULATED_MIN_SHARED, ACCUMULATED_RULE, CheckNet
from kairo_guard.detect.fingerprint import FINGERPRINT_RULE, FingerprintIndex, Overlap
from kairo_guard.detect.winnow import Fingerprinter
from kairo_guard.enforce.check_batch import RecordParts

TARGET_RPS = 50_000
BATCH = 1000
_SYLLABLES = [a + b for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(
        "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(n)
    )


def build_index(guard: Guard, target: int, seed: int) -> tuple[list[str], float]:
    """Index generated documents of 100 tenants until ``target`` fingerprint rows."""
    rng = random.Random(f"docs:{seed}")
    docs: list[str] = []
    rows = 0
    t0 = time.perf_counter()
    while rows < target:
        doc = _words(rng, 700)  # about 4,500 characters, about 220 fingerprints
        rows += guard.fingerprints.add(f"tenant-{len(docs) % 100:03d}", doc)
        docs.append(doc)
    return docs, time.perf_counter() - t0


def make_records(docs: list[str], n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"records:{seed}")
    records = [make_content(i, rng) for i in range(n)]
    for i in range(0, n, 100):  # 1%: a tenant's text, caught by its own fingerprints
        doc = rng.choice(docs)
        start = rng.randrange(len(doc) - 200)
        records[i]["text"] = doc[start : start + 200]
    return records


def old_overlap(index: FingerprintIndex, store: Any, content: object) -> Overlap | None:
    """The per-record test before batches: one store query a record."""
    fps = index.fingerprinter.of_record(content)
    if not fps:
        return None
    counts: dict[str, int] = {}
    for tenants in store.match_fingerprints(fps).values():
        if len(tenants) >= index.boilerplate_tenants:
            continue
        for tenant in tenants:
            counts[tenant] = counts.get(tenant, 0) + 1
    if not counts:
        return None
    tenant, shared = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    found = Overlap(tenant, shared, len(fps))
    return found if shared >= index.min_shared or found.ratio >= index.min_fraction else None


def vetted_records(guard: Guard, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` sealed as operator data of one shard vetted under no policy (what
    :func:`kg_testing.mint_unchecked` makes one record at a time): a shared sink
    checks each of them in full."""
    digests = [content_digest(r) for r in records]
    empty = np.empty(0, dtype=np.int64)
    seals = guard.vetting.writer.write(
        DataClass.OPERATOR_PUBLIC, "bench", digests, [empty] * len(digests),
        watermark=0, policy=UNCHECKED,
    )  # fmt: skip
    return [{**r, SEAL_FIELD: seal} for r, seal in zip(records, seals, strict=True)]


def timed(fn: Callable[[], object], n: int, reps: int) -> dict[str, Any]:
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    med = statistics.median(runs)
    return {"records": n, "median_s": round(med, 4), "records_per_s": round(n / med)}


def throughput(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    ring = KeyRing.generate()
    add_signer(workdir / "state")  # the operator records below are vetted and signed
    guard = Guard(home=workdir / "state", key=ring, env={}, pii_gate=False)
    docs, index_s = build_index(guard, args.fingerprints, args.seed)
    index, store = guard.fingerprints, guard.store
    if args.reference:  # the same fingerprints, made by the pure-Python reference
        key = ring.subkey(PURPOSE_FINGERPRINT, ring.pseudonym_key_id)
        index = FingerprintIndex(store, Fingerprinter(key, native=False))
    t0 = time.perf_counter()
    index.prefilter.refresh()
    load_s = time.perf_counter() - t0
    n, n_old = args.records, args.old_records
    records = make_records(docs, n, args.seed)
    sealed = vetted_records(guard, records)
    batches = [records[i : i + BATCH] for i in range(0, n, BATCH)]
    arrays = [index.fingerprints_of(r) for r in records]
    array_batches = [arrays[i : i + BATCH] for i in range(0, n, BATCH)]
    yes, no = [True] * BATCH, [False] * BATCH

    def net_batched(passing: list[bool]) -> Callable[[], None]:
        def run() -> None:
            net = CheckNet(index)
            net.refresh()
            for batch in batches:
                net.decide(batch, passing[: len(batch)])

        return run

    def old_path() -> None:
        for r in records[:n_old]:
            old_overlap(index, store, r)

    def new_single() -> None:
        for r in records[:n_old]:
            index.overlap(r)

    def lookup_only() -> None:
        for batch in array_batches:
            index.evidence(batch, refresh=False)

    def fingerprint_only() -> None:
        for r in records:
            index.fingerprints_of(r)

    def check_batched(items: list[Any]) -> Callable[[], None]:
        parts = [
            RecordParts({k: v for k, v in r.items() if k != "_kairo"}, r.get("_kairo"))
            for r in items
        ]

        def run() -> None:
            check = guard.checks.start("shared-training", mode="filter")
            for i in range(0, len(parts), BATCH):
                check.decide_batch(parts[i : i + BATCH])
            check.finish()

        return run

    def check_single(items: list[Any]) -> Callable[[], None]:
        def run() -> None:
            check = guard.checks.start("shared-training", mode="filter")
            for r in items[:n_old]:
                check.decide(r)
            check.finish()

        return run

    # every side once before timing (caches, the SQLite page cache), then alternate
    sides: dict[str, tuple[Callable[[], None], int]] = {
        "a_batched_operator": (net_batched(yes), n),
        "a_batched_unlabeled": (net_batched(no), n),
        "b_old_per_record": (old_path, n_old),
        "overlap_per_record_now": (new_single, n_old),
        "lookup_only_batched": (lookup_only, n),
        "fingerprinting_only": (fingerprint_only, n),
        "check_batched_operator": (check_batched(sealed), n),
        "check_batched_unlabeled": (check_batched(records), n),
        "check_one_at_a_time_operator": (check_single(sealed), n_old),
    }
    for fn, _ in sides.values():
        fn()
    results = {name: timed(fn, count, args.reps) for name, (fn, count) in sides.items()}
    a = results["a_batched_operator"]["records_per_s"]
    b = results["b_old_per_record"]["records_per_s"]
    blocked = Counter(
        d.rule for d in guard.checks.start("shared-training", mode="filter").decide_many(sealed)
    )
    guard.close()
    return {
        "fingerprint_rows": sum(1 for _ in store_rows(workdir)),
        "documents": len(docs),
        "index_build_s": round(index_s, 1),
        "prefilter": {
            "load_s": round(load_s, 3),
            "fingerprints": len(index.prefilter),
            "mbytes": round(index.prefilter.nbytes / 1e6, 1),
        },
        "native_fingerprinter": hasattr(index.fingerprinter, "of_text_array"),
        "results": results,
        "ratio_a_over_b": round(a / b, 1),
        "target_rps": TARGET_RPS,
        "pass": a >= TARGET_RPS,
        "check_rules_operator": dict(blocked),
    }


def store_rows(workdir: Path) -> Any:
    import sqlite3

    db = sqlite3.connect(workdir / "state" / "state.sqlite3")
    try:
        yield from db.execute("SELECT fp FROM fingerprints")
    finally:
        db.close()


def _pieces(texts: list[tuple[str, str]], rng: random.Random) -> list[tuple[str, str]]:
    """Cut each text into records of 150 to 400 characters: (source file, text)."""
    pieces = []
    for rel, text in texts:
        pos = 0
        while len(text) - pos >= RECORD_MIN_CHARS:
            end = min(len(text), pos + rng.randint(150, 400))
            pieces.append((rel, text[pos:end]))
            pos = end
    return pieces


def _index(guard: Guard, docs: list[str], tenants: int) -> FingerprintIndex:
    """Index ``docs`` for ``tenants`` tenants, round robin; return the loaded index."""
    for k, doc in enumerate(docs):
        guard.fingerprints.add(f"tenant-{k % tenants}", doc)
    guard.fingerprints.prefilter.refresh()
    return guard.fingerprints


def _blocks(
    index: FingerprintIndex, records: list[tuple[str, str]], threshold: int, check_size: int
) -> dict[str, Any]:
    """Check ``records`` through the net as operator data (about to pass), in checks of
    ``check_size`` fed in batches of 1,000; count the verdicts by rule."""
    rules: Counter[str] = Counter()
    copied: set[str] = set()  # files holding a record caught alone: copies
    accumulated: list[str] = []
    for start in range(0, len(records), check_size):
        net = CheckNet(index, threshold)
        net.refresh()
        chunk = records[start : start + check_size]
        for i in range(0, len(chunk), BATCH):
            batch = chunk[i : i + BATCH]
            found = net.decide([{"text": t} for _, t in batch], [True] * len(batch))
            for (rel, _), verdict in zip(batch, found, strict=True):
                rule = getattr(verdict, "rule", None) or "pass"
                rules[rule] += 1
                if rule == FINGERPRINT_RULE:
                    copied.add(rel)
                elif rule == ACCUMULATED_RULE:
                    accumulated.append(rel)
    alone = sum(rel not in copied for rel in accumulated)
    return {
        **dict(rules),
        "accumulated_rate": round(rules[ACCUMULATED_RULE] / len(records), 5),
        "accumulated_from_files_without_a_copy": alone,
        "accumulated_without_a_copy_rate": round(alone / len(records), 5),
    }


def _recall(
    index: FingerprintIndex,
    docs: list[str],
    public: list[tuple[str, str]],
    threshold: int,
    trials: int,
    rng: random.Random,
) -> dict[str, Any]:
    """Hide 300 characters of one tenant's document, cut in three 100-character pieces,
    in three public records of a batch of 1,000; caught when all three block."""
    caught = alone = 0
    for _ in range(trials):
        k = rng.randrange(len(docs))
        doc = docs[k]
        if len(doc) < 300:
            continue
        start = rng.randrange(len(doc) - 299)
        batch = [{"text": t} for _, t in rng.sample(public, BATCH)]
        spots = rng.sample(range(BATCH), 3)
        for j, spot in enumerate(spots):
            text = batch[spot]["text"]
            cut = rng.randrange(len(text) + 1)
            piece = doc[start + 100 * j : start + 100 * (j + 1)]
            batch[spot] = {"text": f"{text[:cut]} {piece} {text[cut:]}"}
        net = CheckNet(index, threshold)
        net.refresh()
        found = net.decide(batch, [True] * BATCH)
        rules = [getattr(found[spot], "rule", None) for spot in spots]
        caught += all(r is not None for r in rules)
        alone += any(r == FINGERPRINT_RULE for r in rules)
    return {"trials": trials, "caught": caught, "some_piece_caught_alone": alone}


def false_positives(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Two corpora: "clean" (tenants' documents that no public file copies) and
    "files" (tenants' documents drawn from the public files themselves, licences and
    generated code included: some records are copies of them); for each threshold,
    blocks in checks of 1,000 and in one check of all records, and (clean corpus) the
    recall of three 100-character pieces of one document in one batch."""
    rng = random.Random(f"fp:{args.seed}")
    texts = list(public_texts())
    customer = [doc for docs in customer_corpus(10**6).values() for doc in docs]
    every = _pieces(texts, rng)
    clean_records = rng.sample(every, min(args.fp_records, len(every)))
    long_enough = [i for i, (_, text) in enumerate(texts) if len(text) >= 400]
    chosen = set(rng.sample(long_enough, args.fp_docs))
    others = _pieces([t for i, t in enumerate(texts) if i not in chosen], rng)
    file_records = rng.sample(others, min(args.fp_records, len(others)))
    thresholds = [int(t) for t in args.fp_thresholds.split(",")]
    results: dict[str, Any] = {"default_threshold": ACCUMULATED_MIN_SHARED}
    for name, docs, records in (
        ("clean", customer, clean_records),
        ("files", [texts[i][1] for i in sorted(chosen)], file_records),
    ):
        guard = Guard(home=workdir / f"fp-{name}", key=KeyRing.generate(), env={}, pii_gate=False)
        try:
            index = _index(guard, docs, args.fp_tenants)
            out: dict[str, Any] = {
                "indexed_documents": len(docs),
                "tenants": args.fp_tenants,
                "indexed_fingerprints": len(index.prefilter),
                "records": len(records),
                "record_chars_median": statistics.median(len(t) for _, t in records),
            }
            for t in thresholds:
                out[f"threshold_{t}"] = {
                    "checks_of_1000": _blocks(index, records, t, BATCH),
                    "one_check_of_all": _blocks(index, records, t, len(records)),
                }
                if name == "clean":
                    trial_rng = random.Random(f"recall:{args.seed}")
                    out[f"threshold_{t}"]["recall_3x100"] = _recall(
                        index, docs, records, t, args.fp_trials, trial_rng
                    )
            results[name] = out
        finally:
            guard.close()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--fingerprints", type=int, default=1_000_000)
    p.add_argument("--records", type=int, default=50_000)
    p.add_argument("--old-records", type=int, default=10_000, help="records of the slow sides")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cpu", type=int, help="CPU to pin to (default: the last allowed one)")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--workdir", type=Path)
    p.add_argument(
        "--reference",
        action="store_true",
        help="sides (a), (b) and the per-record ones with the pure-Python fingerprinter",
    )
    p.add_argument("--false-positives", action="store_true")
    p.add_argument("--fp-docs", type=int, default=300)
    p.add_argument("--fp-tenants", type=int, default=6)
    p.add_argument("--fp-records", type=int, default=40_000)
    p.add_argument("--fp-thresholds", default="2,3,4,5", help="accumulation thresholds")
    p.add_argument("--fp-trials", type=int, default=300, help="recall trials a threshold")
    args = p.parse_args(argv)
    pinned = None if args.no_pin else pin(args.cpu)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kg-bench-fpcheck-"))
    started = time.perf_counter()
    out: dict[str, Any] = {
        "machine": machine_info.machine(),
        "library": library_fingerprint(),
        "pinned_cpu": pinned,
        "command": " ".join(
            [".venv/bin/python", "benchmarks/bench_fingerprint_check.py", *(argv or sys.argv[1:])]
        ),
    }
    if args.false_positives:
        out["false_positives"] = false_positives(args, workdir)
    else:
        out["throughput"] = throughput(args, workdir)
    out["wall_s"] = round(time.perf_counter() - started, 1)
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    if "throughput" in out:
        table(out["throughput"])
    return 0


def table(t: dict[str, Any]) -> None:
    w = sys.stderr.write
    w(f"{'side':<32} {'records/s':>10} {'us/record':>10}\n")
    for name, r in t["results"].items():
        w(f"{name:<32} {r['records_per_s']:>10,} {1e6 / r['records_per_s']:>10.1f}\n")
    verdict = "PASS" if t["pass"] else "FAIL"
    w(f"(a)/(b) = {t['ratio_a_over_b']}x; target (a) >= {TARGET_RPS:,}/s: {verdict}\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
