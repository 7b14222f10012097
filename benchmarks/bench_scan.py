"""Scan throughput, side by side with a plain ``json.loads`` of the same file.

Generates JSONL files of small sealed records (about 440 bytes a line, about 220 of
them content), then, in one run and alternating which side goes first, measures:

* baseline: read the file line by line and ``json.loads`` (stdlib) every line
  (``orjson.loads`` is timed too, for information only);
* ours: the scan exactly as ``kairo-guard scan`` runs it: ``guard.checks.start(sink)`` and
  :func:`kairo_guard.cli.records.scan_stream` (which ends with ``run.finish()``), the
  passing lines written to ``/dev/null`` through a 1 MiB buffer as the CLI's ``--out``
  does, the production audit log on (default batch size and flush interval, background
  flusher); then ``guard.close()`` (the last audit flush + fsync), timed on its own and
  also added in. Opening the guard is not timed (it is reported).

Targets (the issue): >= 100,000 records/s on one core, and at most 2x the ``json.loads``
time; both judged on scan + close. The process, and so the audit thread, is pinned to
one CPU.

Scenarios: ``--kind customer`` seals customer content of tenant ``acme`` with
``Guard.label_record`` and scans it at ``tenant-fine-tune:acme`` (active agreement: all
allowed after the full verification, content digest included) and at
``shared-training`` (all blocked); ``--kind operator`` vets ``operator_public``
records in shards of 10,000 (``guard.vetting.vet``, what ``kairo-guard label --class
operator_public`` runs: PII policy, fingerprint net, customer identifier index, signed
manifest) and scans them at ``shared-training`` (all allowed: each shard verified once,
then each record hashed and looked up). ``--kind all`` runs both.

Run: ``.venv/bin/python benchmarks/bench_scan.py`` (defaults: customer, 200,000 records,
3 repetitions; well under a minute). A script, not a test. Extras:

* ``--breakdown``: each step of the scan path timed alone, microseconds per record;
* ``--profile``: pyinstrument (``pip install pyinstrument``) over one scan;
* ``--py-spy``: re-runs the scans under ``py-spy record --native`` (``pip install
  py-spy``) and turns the samples into microseconds per record by step.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import machine_info
import orjson

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("tests/support", "examples")]

import kairo_guard.cli.main  # noqa: F401 - first: cli_records once could not be imported alone
from kairo_guard import Guard, KeyRing, SignerKeys
from kairo_guard.cli.records import scan_stream
from kairo_guard.core.content import sealed_line
from kairo_guard.core.sinks import Sink, parse_kind

SIGNER = SignerKeys.generate()
"""The vetting role's key, held by the generating and the scanning guard alike."""
SHARD = 10_000
"""Operator records per vetted shard (as ``kairo-guard label`` writes them)."""
TARGET_RPS = 100_000
TARGET_RATIO = 2.0
TENANT = "acme"
SOURCE = "bench"

# -- data ---------------------------------------------------------------------------

_WORDS = {
    "en": (
        "the model training data customer invoice report quarterly revenue support ticket "
        "summary meeting notes agent reply draft contract clause renewal pricing table "
        "forecast churn onboarding escalation priority resolved pending shipment order "
        "refund policy account billing usage dashboard latency error timeout retry"
    ),
    "de": (
        "die Rechnung für den Kunden Bestellung Lieferung Größe prüfen Übersicht Änderung "
        "Vertrag Kündigung Zahlung offen erledigt Besprechung Notizen Antwort Entwurf"
    ),
    "fr": (
        "la facture du client commande livraison réponse brouillon contrat résiliation "
        "paiement réunion notes priorité échéance révisé été créé déjà"
    ),
    "ja": "請求書 顧客 注文 配送 返金 契約 会議 議事録 回答 下書き 優先度 解決済み",
}
_VOCAB = {lang: words.split(" ") for lang, words in _WORDS.items()}
_LANGS = ("en",) * 7 + ("de", "fr", "ja")


def make_content(i: int, rng: random.Random) -> dict[str, Any]:
    """One record's content: about 150-300 bytes of JSON."""
    lang = rng.choice(_LANGS)
    words = _VOCAB[lang]
    budget = rng.randint(95, 235)  # bytes of text; the other fields add about 55
    parts: list[str] = []
    size = 0
    while size < budget:
        w = rng.choice(words)
        parts.append(w)
        size += len(w.encode()) + 1
    sep = "" if lang == "ja" else " "
    return {"id": f"doc-{i:07d}", "text": sep.join(parts), "lang": lang, "n": rng.randrange(10**6)}


def generate(path: Path, guard: Guard, kind: str, n: int, seed: int) -> dict[str, Any]:
    """Write ``n`` sealed records to ``path``; return sizes and the time taken."""
    rng = random.Random(f"{seed}-{kind}")  # customer and operator texts differ (vetting
    # refuses operator records that copy indexed customer content)
    t0 = time.perf_counter()
    content_bytes = 0
    with path.open("wb", buffering=1 << 20) as fh:
        shard: list[dict[str, Any]] = []
        for i in range(n):
            content = make_content(i, rng)
            content_bytes += len(orjson.dumps(content))
            if kind == "customer":
                record = guard.label_record(content, tenant=TENANT, source=SOURCE)
                fh.write(orjson.dumps(record) + b"\n")
                continue
            shard.append(content)
            if len(shard) == SHARD or i == n - 1:  # vetted as kairo-guard label does
                for body, seal in zip(shard, guard.vetting.vet(shard, source=SOURCE), strict=True):
                    if not isinstance(seal, str):
                        raise SystemExit(f"vetting refused a generated record: {seal}")
                    fh.write(sealed_line(body, seal))
                shard.clear()
    size = path.stat().st_size
    return {
        "path": str(path),
        "records": n,
        "bytes": size,
        "avg_line_bytes": round(size / n, 1),
        "avg_content_bytes": round(content_bytes / n, 1),
        "seconds": round(time.perf_counter() - t0, 3),
    }


# -- measurements -------------------------------------------------------------------


@dataclass
class Scenario:
    id: str
    name: str
    kind: str  # which file: customer or operator
    sink: str
    expect_allowed: bool
    baseline: list[float] = field(default_factory=list)
    baseline_orjson: list[float] = field(default_factory=list)
    scan: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    open_guard: list[float] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def scenarios() -> list[Scenario]:
    return [
        Scenario(
            "customer-ft",
            f"customer -> tenant-fine-tune:{TENANT}",
            "customer",
            f"tenant-fine-tune:{TENANT}",
            expect_allowed=True,
        ),
        Scenario(
            "customer-shared",
            "customer -> shared-training",
            "customer",
            "shared-training",
            expect_allowed=False,
        ),
        Scenario(
            "operator-shared",
            "operator_public -> shared-training",
            "operator",
            "shared-training",
            expect_allowed=True,
        ),
    ]


def resolve(guard: Guard, name: str) -> Sink:
    """Resolve a sink kind the way ``kairo-guard scan --sink KIND`` does."""
    kind, tenant = parse_kind(name)
    return guard.resolve_sink(name, kind=kind, tenant=tenant)


def open_bench_guard(home: Path, ring: KeyRing) -> Guard:
    return Guard(home=home, key=ring, env={}, signer=SIGNER)


def time_baseline(path: Path, n: int) -> float:
    loads = json.loads
    gc.collect()
    t0 = time.perf_counter()
    count = 0
    with path.open("rb") as fh:
        for line in fh:
            loads(line)
            count += 1
    elapsed = time.perf_counter() - t0
    if count != n:
        raise SystemExit(f"baseline read {count} lines, expected {n}")
    return elapsed


def time_baseline_orjson(path: Path) -> float:
    loads = orjson.loads
    gc.collect()
    t0 = time.perf_counter()
    with path.open("rb") as fh:
        for line in fh:
            loads(line)
    return time.perf_counter() - t0


def time_ours(home: Path, ring: KeyRing, path: Path, sc: Scenario) -> None:
    t_open = time.perf_counter()
    guard = open_bench_guard(home, ring)
    t_open = time.perf_counter() - t_open
    max_bytes = guard.settings.limits.max_record_bytes
    sink = resolve(guard, sc.sink)
    with open(os.devnull, "wb", buffering=1 << 20) as out:
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        run = guard.checks.start(sink)
        with path.open("rb") as stream:
            report = scan_stream(run, stream, out, max_bytes)
        t1 = time.perf_counter()
        guard.close()
        t2 = time.perf_counter()
        c2 = time.process_time()
    sc.open_guard.append(t_open)
    sc.scan.append(t1 - t0)
    sc.close.append(t2 - t1)
    sc.cpu.append(c2 - c0)
    sc.report = {
        "total": report.total,
        "allowed": report.allowed,
        "blocked": report.blocked,
        "by_rule": dict(report.by_rule),
    }
    if report.allowed != (report.total if sc.expect_allowed else 0):
        raise SystemExit(f"{sc.name}: unexpected outcome {sc.report}")


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _r(xs: list[float]) -> list[float]:
    return [round(x, 4) for x in xs]


def summarize(sc: Scenario, n: int) -> dict[str, Any]:
    total = [s + c for s, c in zip(sc.scan, sc.close, strict=True)]
    base, ours, scan = med(sc.baseline), med(total), med(sc.scan)
    doc: dict[str, Any] = {
        "id": sc.id,
        "name": sc.name,
        "file": sc.kind,
        "sink": sc.sink,
        "records": n,
        "report": sc.report,
        "samples_s": {
            "baseline_json_loads": _r(sc.baseline),
            "baseline_orjson_loads": _r(sc.baseline_orjson),
            "ours_scan": _r(sc.scan),
            "ours_close": _r(sc.close),
            "ours_scan_plus_close": _r(total),
            "ours_cpu_scan_plus_close": _r(sc.cpu),
            "guard_open_untimed": _r(sc.open_guard),
        },
        "median_s": {
            "baseline_json_loads": round(base, 4),
            "baseline_orjson_loads": round(med(sc.baseline_orjson), 4),
            "ours_scan": round(scan, 4),
            "ours_close": round(med(sc.close), 4),
            "ours_scan_plus_close": round(ours, 4),
            "ours_cpu_scan_plus_close": round(med(sc.cpu), 4),
        },
    }
    if not sc.baseline:  # --sides ours (profiling runs)
        return doc
    rps, ratio = n / ours, ours / base
    doc.update(
        {
            "records_per_s": {
                "baseline_json_loads": round(n / base),
                "baseline_orjson_loads": round(n / med(sc.baseline_orjson)),
                "ours_scan": round(n / scan),
                "ours_scan_plus_close": round(rps),
            },
            "us_per_record": {
                "baseline_json_loads": round(base / n * 1e6, 3),
                "baseline_orjson_loads": round(med(sc.baseline_orjson) / n * 1e6, 3),
                "ours_scan": round(scan / n * 1e6, 3),
                "ours_scan_plus_close": round(ours / n * 1e6, 3),
            },
            "ratio_ours_over_baseline": round(ratio, 3),
            "ratio_scan_only_over_baseline": round(scan / base, 3),
            "pass_rps": rps >= TARGET_RPS,
            "pass_ratio": ratio <= TARGET_RATIO,
        }
    )
    return doc


# -- breakdown: each step alone -----------------------------------------------------


def _per_record(
    fn: Callable[[Any], object], n: int, setup: Callable[[], Any] | None = None, reps: int = 3
) -> float:
    """Best of ``reps`` runs of ``fn(setup())`` in microseconds per record (setup untimed)."""
    best = float("inf")
    for _ in range(reps):
        arg = setup() if setup is not None else None
        gc.collect()
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def breakdown(
    home: Path, ring: KeyRing, path: Path, sc: Scenario, limit: int
) -> list[tuple[str, float]]:
    """Time each step of the scan path alone, in microseconds per record.

    Loops are list comprehensions over pre-built inputs (about 0.03 us of loop each),
    which are frozen out of the garbage collector's view (``gc.freeze``). Only the first
    ``limit`` records are used: over 200,000 pre-built objects the steps that read or
    build many objects miss the CPU caches, which a streaming scan does not.
    The library changes under this script, so every step that reaches past the public
    API (the codec's ``_macs``, ``SinkCheck._account``) is guarded: a step that no
    longer works reports ``nan``, and rows marked ``=`` are differences of two others.
    """
    from kairo_guard.core import jsonl

    with path.open("rb") as fh:
        lines = fh.read().splitlines()[:limit]
    n = len(lines)
    path = path.with_name(f"breakdown-{path.name}")  # the same first ``limit`` lines
    path.write_bytes(b"\n".join(lines) + b"\n")
    loads, dumps, sha = orjson.loads, orjson.dumps, hashlib.sha256
    sort = orjson.OPT_SORT_KEYS
    values = [loads(r) for r in lines]
    seals = [v.pop("_kairo") for v in values]
    blobs = [dumps(v, option=sort) for v in values]
    digests = [sha(b).hexdigest() for b in blobs]
    # Keep the collector off the pre-built inputs (millions of objects): without this
    # every gen-2 pass walks them and steps that allocate look several times dearer than
    # in a streaming scan. New objects are still collected as usual.
    gc.collect()
    gc.freeze()

    guard = open_bench_guard(home, ring)
    rows: list[tuple[str, float]] = []
    got: dict[str, float] = {}
    try:
        codec = guard.codec
        max_bytes = guard.settings.limits.max_record_bytes
        sink = resolve(guard, sc.sink)
        split_lines: Callable[..., Any] = getattr(jsonl, "iter_raw_lines", None) or jsonl.iter_lines

        def add(
            key: str,
            label: str,
            fn: Callable[[Any], object],
            setup: Callable[[], Any] | None = None,
        ) -> None:
            try:
                got[key] = _per_record(fn, n, setup)
                rows.append((label, got[key]))
            except Exception as exc:  # noqa: BLE001 - the library moved; say so, go on
                rows.append((f"{label} [n/a: {type(exc).__name__}]", float("nan")))

        def diff(label: str, a: str, b: str) -> None:
            if a in got and b in got:
                rows.append((label, got[a] - got[b]))

        def read_split(_: object) -> None:
            with path.open("rb") as fh:
                for _ in split_lines(fh, max_bytes):
                    pass

        def pop_seal(vs: list[dict[str, Any]]) -> None:
            for v in vs:
                v.pop("_kairo", None)

        def tag_setup() -> tuple[Any, list[str]]:
            mac = next(iter(codec._macs.values()))
            return mac, [s[: s.rfind(".")] for s in seals]

        def tag_all(arg: tuple[Any, list[str]]) -> None:
            mac, signed = arg
            [mac.tag(m) for m in signed]

        def account(_: object) -> None:
            run = guard.checks.start(sink)
            acc = run._account
            for i, (d, dg, lb) in enumerate(zip(decisions, digests, labels, strict=True)):
                acc(i, d, dg, run._pseudonym(lb.tenant))

        def decide_parts(_: object) -> None:
            dp = guard.checks.start(sink).decide_parts
            for v, s, d in zip(values, seals, digests, strict=True):
                dp(v, s, d)

        def whole(_: object) -> None:
            with path.open("rb") as stream:
                scan_stream(guard.checks.start(sink), stream, None, max_bytes)

        add("read", f"read + split lines ({split_lines.__name__})", read_split)
        add("loads", "orjson.loads(line)", lambda _: [loads(r) for r in lines])
        add("pop", "value.pop('_kairo')", pop_seal, lambda: [loads(r) for r in lines])
        add(
            "dumps",
            "content digest: orjson.dumps(OPT_SORT_KEYS)",
            lambda _: [dumps(v, option=sort) for v in values],
        )
        add(
            "sha",
            "content digest: sha256().hexdigest()",
            lambda _: [sha(b).hexdigest() for b in blobs],
        )
        add("open", "seal: SealCodec.open, all of it", lambda _: [codec.open(s) for s in seals])
        add("tag", "  seal: HMAC-SHA256 + base64url of the tag (_Mac.tag)", tag_all, tag_setup)
        add(
            "cmp",
            "  seal: hmac.compare_digest(tag, tag)",
            lambda _: [hmac.compare_digest(s[-43:], s[-43:]) for s in seals],
        )
        diff("= seal: the rest of open (parse, slice, payload, Label)", "open", "tag")
        labels = [codec.open(s) for s in seals]
        label_type = type(labels[0])
        add(
            "label",
            f"  seal: building the {label_type.__name__} it returns",
            lambda _: [label_type(*lb) for lb in labels],
        )
        inexact = getattr(jsonl, "has_inexact_number", None)
        if inexact is not None:
            add(
                "exact",
                "exactness check: jsonl.has_inexact_number (run for allowed records only)",
                lambda _: [inexact(r, v) for r, v in zip(lines, values, strict=True)],
            )
        decisions = [
            guard.checks.start(sink).decide_parts(v, s, d)
            for v, s, d in zip(values, seals, digests, strict=True)
        ]
        add("dp", "SinkCheck.decide_parts(content, seal, digest)", decide_parts)
        diff("= decide_parts less SealCodec.open (policy, accounting)", "dp", "open")
        add("acc", "  SinkCheck._account (counters, row; audit append per 512)", account)
        add("scan", "scan_stream end to end (out=None, close not included)", whole)
        parts = ["read", "loads", "pop", "dumps", "sha", "dp"]
        if sc.expect_allowed and "exact" in got:
            parts.append("exact")
        if all(k in got for k in parts):
            rows.append((f"= sum of steps {'+'.join(parts)}", sum(got[k] for k in parts)))
    finally:
        guard.close()
        gc.unfreeze()
    return rows


# -- pyinstrument -------------------------------------------------------------------


def profile(
    home: Path, ring: KeyRing, path: Path, sc: Scenario, n: int, top: int
) -> dict[str, Any]:
    """Profile one production-shaped scan (close included) with pyinstrument.

    pyinstrument hooks every call, C calls included, so small functions look dearer
    than they are (the profiled scan runs about 3x slower); read it as a call tree and
    use ``--py-spy`` or ``--breakdown`` for microseconds.
    """
    try:
        from pyinstrument import Profiler
    except ImportError as exc:
        raise SystemExit(
            "--profile needs pyinstrument: .venv/bin/pip install pyinstrument"
        ) from exc

    guard = open_bench_guard(home, ring)
    max_bytes = guard.settings.limits.max_record_bytes
    sink = resolve(guard, sc.sink)
    profiler = Profiler(interval=0.001)
    with open(os.devnull, "wb", buffering=1 << 20) as out:
        profiler.start()
        run = guard.checks.start(sink)
        with path.open("rb") as stream:
            scan_stream(run, stream, out, max_bytes)
        guard.close()
        session = profiler.stop()
    root = session.root_frame()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()

    def name(frame: Any) -> str:
        return f"{frame.function} ({Path(frame.file_path or '?').name}:{frame.line_no})"

    def walk(frame: Any, stack: frozenset[str]) -> None:
        if frame.is_synthetic:  # "[self]" and friends: time of the parent itself
            if frame.parent is not None:
                self_time[name(frame.parent)] += frame.time
            return
        key = name(frame)
        if key not in stack:
            inclusive[key] += frame.time
        if not frame.children:
            self_time[key] += frame.time
        for child in frame.children:
            walk(child, stack | {key})

    if root is not None:
        walk(root, frozenset())
    total = session.duration
    return {
        "duration_s": round(total, 4),
        "records": n,
        "self_pct": [(k, round(100 * v / total, 1)) for k, v in self_time.most_common(top)],
        "inclusive_pct": [(k, round(100 * v / total, 1)) for k, v in inclusive.most_common(top)],
        "text": profiler.output_text(unicode=False, color=False),
    }


# -- py-spy -------------------------------------------------------------------------


def _native_kind(frames: list[str]) -> str:
    """Name the C code a Python frame was in, from the native frames below it."""
    text = ";".join(frames)
    if "orjson" in text:
        return "orjson"
    if "hashopenssl" in text or "libcrypto" in text or "EVP_" in text or "SHA256" in text:
        return "sha256/HMAC (OpenSSL)"
    if "fsync" in text or "fdatasync" in text:
        return "fsync"
    if "binascii" in text:
        return "base64 (binascii)"
    return ""


def _step_of(frames: list[str]) -> str:
    """The deepest kairo_guard function of a stack, and the C library it was in.

    Generic on purpose: the library's hot path is being changed while this exists.
    """
    for i in range(len(frames) - 1, -1, -1):
        frame = frames[i]
        if "kairo_guard/" in frame:
            func, _, where = frame.partition(" (")
            module = where.split("kairo_guard/", 1)[-1].split(":", 1)[0]
            below = [f for f in frames[i + 1 :] if ".py:" not in f or "/kairo_guard/" in f]
            native = _native_kind(below)
            py_below = [f.split(" (", 1)[0] for f in frames[i + 1 :] if ".py:" in f]
            via = f" -> {py_below[0]}" if py_below and not native else ""
            return f"{module}:{func}" + (f" [{native}]" if native else via)
    return "other (no kairo_guard frame)"


def spy_report(raw: Path, us_per_record: float | None) -> dict[str, Any]:
    """Turn py-spy's raw (collapsed) samples of the scans into steps and us/record."""
    steps: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        in_scan = any(f.startswith(("scan_stream ", "Guard.close ")) for f in frames)
        # the child reuses the data, so every background flush belongs to a scan
        audit_thread = any(f.startswith("_Writer.flush_locked ") for f in frames) and any(
            f.startswith("_Writer.run ") for f in frames
        )
        if in_scan or audit_thread:
            steps[_step_of(frames)] += int(count)
            total += int(count)
    rows = [
        {
            "step": step,
            "samples": c,
            "pct": round(100 * c / total, 1),
            "us_per_record": None if us_per_record is None else round(us_per_record * c / total, 2),
        }
        for step, c in steps.most_common()
    ]
    return {"samples": total, "us_per_record_total": us_per_record, "steps": rows}


def run_py_spy(args: argparse.Namespace, sc: Scenario, workdir: Path) -> Path:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    raw = workdir / f"py-spy-{sc.id}.txt"
    cmd = [
        spy, "record", "--native", "--rate", str(args.spy_rate), "--format", "raw",
        "--output", str(raw), "--",
        sys.executable, str(Path(__file__).resolve()), "--sides", "ours", "--kind", sc.kind,
        "--scenario", sc.id, "--records", str(args.records), "--reps", str(args.spy_reps),
        "--workdir", str(workdir), "--reuse",
    ]  # fmt: skip
    if args.cpu is not None:
        cmd += ["--cpu", str(args.cpu)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return raw


# -- main ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {**machine_info.machine(), "orjson": orjson.__version__}


def library_fingerprint() -> dict[str, str]:
    """Which state of kairo_guard was measured: others edit it while benchmarks run."""
    digest, newest = machine_info.library_state()
    return {
        "sources_sha256": digest,
        "newest_source_mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest)),
    }


def pin(cpu: int | None) -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    chosen = sorted(os.sched_getaffinity(0))[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return chosen


def table(results: list[dict[str, Any]], out: IO[str]) -> None:
    w = out.write
    w(
        f"{'scenario':<36} {'json.loads/s':>12} {'ours/s':>9} {'scan only/s':>11} "
        f"{'close ms':>8} {'ratio':>6} {'>=100k/s':>8} {'<=2x':>5}\n"
    )
    for r in results:
        rps = r["records_per_s"]
        w(
            f"{r['name']:<36} {rps['baseline_json_loads']:>12,} "
            f"{rps['ours_scan_plus_close']:>9,} {rps['ours_scan']:>11,} "
            f"{r['median_s']['ours_close'] * 1000:>8.1f} {r['ratio_ours_over_baseline']:>6.2f} "
            f"{'PASS' if r['pass_rps'] else 'FAIL':>8} {'PASS' if r['pass_ratio'] else 'FAIL':>5}\n"
        )
    w(
        "records/s are medians; ours = start_check + scan_stream (run.finish included) + "
        "guard.close();\nratio = ours time / json.loads time. "
        f"Targets: >= {TARGET_RPS:,} records/s and ratio <= {TARGET_RATIO}.\n"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--kind", choices=["customer", "operator", "all"], default="customer")
    p.add_argument(
        "--scenario",
        action="append",
        choices=[s.id for s in scenarios()],
        help="run only these scenarios (repeatable; default: all of --kind)",
    )
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--reps", type=int, default=3, help="measurements of each side (median)")
    p.add_argument("--sides", choices=["both", "ours"], default="both")
    p.add_argument("--workdir", type=Path, help="keep data and state here (default: a temp dir)")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the data, key and state an earlier run left in --workdir",
    )
    p.add_argument("--cpu", type=int, help="CPU to pin to (default: the last allowed one)")
    p.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="JSON on stdout (the table on stderr)")
    p.add_argument("--breakdown", action="store_true", help="time each step alone")
    p.add_argument("--breakdown-records", type=int, default=20_000)
    p.add_argument("--profile", action="store_true", help="pyinstrument over one scan")
    p.add_argument("--py-spy", action="store_true", help="py-spy --native over the scans")
    p.add_argument("--spy-rate", type=int, default=500, help="py-spy samples per second")
    p.add_argument("--spy-reps", type=int, default=2, help="scans per scenario under py-spy")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pinned = None if args.no_pin else pin(args.cpu)
    started = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kg-bench-scan-"))
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "state"
    kinds = ["customer", "operator"] if args.kind == "all" else [args.kind]
    chosen = [
        sc
        for sc in scenarios()
        if sc.kind in kinds and (not args.scenario or sc.id in args.scenario)
    ]
    kinds = [k for k in kinds if any(sc.kind == k for sc in chosen)]
    key_file = workdir / "bench.key"
    reuse = args.reuse and key_file.exists() and home.exists()
    global SIGNER  # the vetting key of the run, kept beside its data
    signer_file = workdir / "bench.signer"
    if reuse and signer_file.exists():
        ring = KeyRing.from_env_value(key_file.read_text())
        SIGNER = SignerKeys.from_value(signer_file.read_text())
        kinds_to_make = [k for k in kinds if not (workdir / f"{k}.jsonl").exists()]
    else:
        if home.exists():
            shutil.rmtree(home)  # a fresh key: old seals would not verify
        ring = KeyRing.generate()
        key_file.write_text(ring.to_env_value())
        key_file.chmod(0o600)
        signer_file.write_text(SIGNER.to_value())
        signer_file.chmod(0o600)
        kinds_to_make = kinds
    say = sys.stderr if args.json else sys.stdout
    doc: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {**machine(), "pinned_cpu": pinned},
        "library": library_fingerprint(),
        "params": {
            "records": args.records,
            "reps": args.reps,
            "kind": args.kind,
            "scenarios": [sc.id for sc in chosen],
            "workdir": str(workdir),
            "targets": {"records_per_s": TARGET_RPS, "max_ratio": TARGET_RATIO},
        },
        "generated": {},
    }
    try:
        guard = open_bench_guard(home, ring)
        try:
            if not reuse:
                guard.grant_agreement(TENANT, reference="bench")
            for kind in kinds_to_make:
                g = generate(workdir / f"{kind}.jsonl", guard, kind, args.records, args.seed)
                doc["generated"][kind] = g
                say.write(
                    f"generated {g['records']:,} {kind} records: {g['avg_line_bytes']} B/line, "
                    f"{g['avg_content_bytes']} B of content, in {g['seconds']} s\n"
                )
        finally:
            guard.close()

        for sc in chosen:
            path = workdir / f"{sc.kind}.jsonl"
            time_baseline(path, args.records)  # warm the page cache and the interpreter
            for i in range(args.reps):
                ours_first = i % 2 == 1
                if ours_first or args.sides == "ours":
                    time_ours(home, ring, path, sc)
                if args.sides == "both":
                    sc.baseline.append(time_baseline(path, args.records))
                    sc.baseline_orjson.append(time_baseline_orjson(path))
                    if not ours_first:
                        time_ours(home, ring, path, sc)
        results = [summarize(sc, args.records) for sc in chosen]
        doc["results"] = results
        if args.sides == "ours":
            for r in results:
                say.write(
                    f"{r['name']}: scan + close median {r['median_s']['ours_scan_plus_close']} s\n"
                )
        else:
            doc["pass"] = all(r["pass_rps"] and r["pass_ratio"] for r in results)
            say.write(
                f"\n{args.records:,} records, {args.reps} reps each side, pinned to CPU {pinned}, "
                f"python {platform.python_version()}, kairo_guard sources "
                f"{doc['library']['sources_sha256']}\n"
            )
            table(results, say)

        if args.breakdown:
            doc["breakdown"] = {}
            for sc in chosen:
                limit = min(args.records, args.breakdown_records)
                rows = breakdown(home, ring, workdir / f"{sc.kind}.jsonl", sc, limit)
                doc["breakdown"][sc.id] = rows
                say.write(
                    f"\nbreakdown, us/record, each step alone (best of 3, first {limit:,} "
                    f"records): {sc.name}\n"
                )
                for label, us in rows:
                    say.write(f"  {label:<76} {us:7.3f}\n")

        if args.profile:
            doc["profile"] = {}
            for sc in chosen:
                path = workdir / f"{sc.kind}.jsonl"
                prof = profile(home, ring, path, sc, args.records, args.top)
                text_path = workdir / f"pyinstrument-{sc.id}.txt"
                text_path.write_text(prof.pop("text"))
                doc["profile"][sc.id] = prof
                say.write(
                    f"\npyinstrument, {sc.name}: {prof['duration_s']} s under the profiler "
                    f"(call tree in {text_path})\n  self time, % of the profiled scan:\n"
                )
                for label, pct in prof["self_pct"]:
                    say.write(f"    {label:<72} {pct:5.1f}\n")
                say.write("  inclusive time, %:\n")
                for label, pct in prof["inclusive_pct"]:
                    say.write(f"    {label:<72} {pct:5.1f}\n")

        if args.py_spy:
            doc["py_spy"] = {}
            by_id = {r["id"]: r for r in results}
            for sc in chosen:
                raw = run_py_spy(args, sc, workdir)
                us = by_id[sc.id].get("us_per_record", {}).get("ours_scan_plus_close")
                rep = spy_report(raw, us)
                rep["raw"] = str(raw)
                doc["py_spy"][sc.id] = rep
                say.write(
                    f"\npy-spy --native, {sc.name}: {rep['samples']} samples in the scans; "
                    f"us/record = share x the measured {us} us/record\n"
                )
                for row in rep["steps"]:
                    us_txt = "" if row["us_per_record"] is None else f"{row['us_per_record']:7.2f}"
                    say.write(f"  {row['step']:<66} {row['pct']:5.1f}% {us_txt}\n")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    doc["wall_s"] = round(time.perf_counter() - started, 1)
    verdict = {True: "PASS", False: "FAIL", None: "n/a"}[doc.get("pass")]
    say.write(f"\ntotal wall time {doc['wall_s']} s; targets: {verdict}\n")
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 1 if args.strict and doc.get("pass") is False else 0


if __name__ == "__main__":
    raise SystemExit(main())
