"""Ray Data guard throughput: 1 worker against 2, beside the single-process scan.

Generates operator records (about 220 bytes of content each), vets them in shards of
10,000 (``guard.vetting.vet``, what ``kairo-guard label --class operator_public`` runs;
the PII gate off to keep generation short: the sink path is the same), and writes them
twice: as JSONL (``kairo-guard scan``'s input) and as Parquet with the canonical bytes
column (``kairo_guard.integrations.arrow.write_parquet``), the form a Ray job reads.

Then, in one run, alternating the order each repetition (all the whole calls first,
then the passes alone and the scan, so that no timed pass runs while Ray frees the
output of a whole call):

* ``guard_dataset(ds, guard, sink="shared-training", mode="filter", concurrency=k)``
  for k = 1 and k = 2 on a local Ray cluster of 2 CPUs, the dataset read from the
  Parquet file and materialized in the object store first (not timed). Timed: the whole
  call (driver snapshot, starting the actors, the workers' checks, the driver's report
  and audit entry) and, separately, the workers' pass alone (``map_batches(BatchGuard)``
  on a pool of k actors from a snapshot taken before, actor start-up included);
* the single-process scan of the JSONL file (``scan_stream`` at the same sink, as
  ``kairo-guard scan`` runs it), pinned to one CPU.

It reports records/s of each, and the ratio 2 workers / 1 worker three ways: the
throughput while every worker runs (the target, >= 1.7: each batch's start and end are
taken on its worker; the rows of the batches that started once the last worker had
begun, over the time from then to the last batch's end), the workers' pass with actor
start-up, and the whole call (snapshot, start-up, checks, report). A job's fixed costs
(a few seconds to start actors and read the snapshot, the driver's snapshot and report)
do not shrink with more workers; on a cluster of 2 CPUs, Ray's own processes also take
a share of the same two cores. From the 1-worker throughput (a core's rate), it gives
the cores (and 2-core machines) needed to check 1 TB of such records in an hour.

Each timed run starts once the cluster's CPUs are all free again (the actors of the run
before are torn down asynchronously; a pool started while they hold their CPUs gets its
second worker late).

Run: ``.venv/bin/python benchmarks/bench_ray.py`` (defaults: 1,000,000 records, about
300 MB of JSONL, as a Ray job is for data of that size and more; 5 repetitions, whose
medians are compared: single passes on this 2-core machine vary by a tenth; about
eight minutes). With 200,000 records each pass lasts 2-4 s and holds 8 batches, so one
batch's placement moves the ratio by a tenth. A script, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import machine_info
import pyarrow as pa
import pyarrow.parquet as pq

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests" / "support")]

import ray

from kairo_guard import SEAL_FIELD, Guard, KeyRing, SignerKeys
from kairo_guard.cli.records import scan_stream
from kairo_guard.core.content import sealed_line
from kairo_guard.integrations.arrow import write_parquet
from kairo_guard.integrations.ray import BatchGuard, guard_dataset, snapshot

SHARD = 10_000
SINK = "shared-training"
TARGET = 1.7
WORDS = [
    "release",
    "worker",
    "restart",
    "faster",
    "cache",
    "latency",
    "retry",
    "queue",
    "index",
    "shard",
    "route",
    "model",
    "billing",
    "usage",
    "report",
    "summary",
    "policy",
    "onboarding",
    "account",
    "table",
    "error",
    "resolved",
]


def generate(guard: Guard, n: int, workdir: Path) -> tuple[Path, Path, int]:
    """Vet ``n`` operator records; write them as JSONL and as Parquet."""
    import random

    rng = random.Random(7)
    jsonl, parquet = workdir / "operator.jsonl", workdir / "operator.parquet"
    records: list[dict[str, Any]] = []
    with jsonl.open("wb") as out:
        for start in range(0, n, SHARD):
            contents = [
                {"id": i, "lang": "en", "n": rng.randrange(10**6),
                 "text": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(12, 30)))}
                for i in range(start, min(n, start + SHARD))
            ]  # fmt: skip
            seals = guard.vetting.vet(contents, source="bench")
            for content, seal in zip(contents, seals, strict=True):
                assert isinstance(seal, str), seal
                out.write(sealed_line(content, seal))
                records.append({**content, SEAL_FIELD: seal})
    write_parquet(records, parquet)
    return jsonl, parquet, jsonl.stat().st_size


class TimedBatchGuard(BatchGuard):
    """BatchGuard that also says when each batch started and ended on its worker."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.time()
        rows = super().__call__(batch).num_rows
        done = time.time()
        return pa.table({"worker": [os.getpid()], "t0": [started], "t1": [done], "rows": [rows]})


def steady_rate(spans: Any, workers: int) -> float:
    """Records a second while every worker runs: the rows of the batches that started
    once the last worker had begun, over the time from then to the last batch's end (a
    batch under way at that moment counts its time, not its rows: conservative)."""
    firsts = sorted(spans.groupby("worker").t0.min())
    begun = firsts[min(workers, len(firsts)) - 1]
    inside = spans[spans.t0 >= begun]
    return float(inside.rows.sum() / (spans.t1.max() - begun))


def cluster_idle(cpus: int = 2, bound: float = 60.0) -> None:
    """Wait until every CPU of the cluster is free again: the actors of the run before
    are torn down asynchronously, and a pool started while they still hold their CPUs
    gets its second actor late (measured: a 2-worker pass of 1,000,000 records took
    19.7 s right after a guard_dataset call and 9.2 s on an idle cluster)."""
    deadline = time.monotonic() + bound
    free: Any = ray.available_resources
    while free().get("CPU", 0) < cpus and time.monotonic() < deadline:
        time.sleep(0.1)


def time_whole(guard: Guard, ds: Any, workers: int, batch: int) -> float:
    """The whole guard_dataset call (snapshot, actors, checks, report), seconds."""
    reports: list[Any] = []
    cluster_idle()
    t = time.perf_counter()
    guard_dataset(
        ds, guard, sink=SINK, mode="filter", batch_size=batch, concurrency=workers,
        actors=True, on_report=reports.append,
    )  # fmt: skip
    whole = time.perf_counter() - t
    assert reports[0].blocked == 0, reports[0].by_rule
    assert reports[0].allowed == ds.count()
    return whole


def time_pass(ds: Any, ref: Any, workers: int, batch: int) -> tuple[float, float]:
    """The workers' pass alone on a snapshot taken before (actor start-up included),
    seconds, and the workers' steady rate (records/s)."""
    cluster_idle()
    t = time.perf_counter()
    spans = ds.map_batches(
        TimedBatchGuard, fn_constructor_args=(ref,), batch_format="pyarrow", batch_size=batch,
        compute=ray.data.ActorPoolStrategy(size=workers),
    ).to_pandas()  # fmt: skip
    alone = time.perf_counter() - t
    assert int(spans.rows.sum()) == ds.count()
    return alone, steady_rate(spans, workers)


def time_scan(guard: Guard, jsonl: Path) -> float:
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    try:
        t = time.perf_counter()
        with jsonl.open("rb") as stream:
            report = scan_stream(guard.checks.start(SINK, mode="filter"), stream, None, 1 << 20)
        took = time.perf_counter() - t
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    assert report.blocked == 0, report.by_rule
    return took


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--batch", type=int, default=25_000, help="rows a worker decides at once")
    p.add_argument("--workdir", type=Path, help="keep the generated data here")
    args = p.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kg-bench-ray-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(machine_info.machine())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # all of the cluster for the job: by default Ray Data keeps part of a cluster this
    # small for its own bookkeeping and ran one task at a time here
    context.execution_options.resource_limits = ray.data.ExecutionResources(cpu=2)
    with Guard(home=workdir / "state", key=KeyRing.generate(), env={}, pii_gate=False,
               signer=SignerKeys.generate()) as guard:  # fmt: skip
        t = time.perf_counter()
        jsonl, parquet, size = generate(guard, args.records, workdir)
        print(f"generated {args.records:,} vetted records ({size / args.records:.1f} B a "
              f"JSONL line) in {time.perf_counter() - t:.1f} s")  # fmt: skip
        blocks = max(4, args.records // args.batch)
        ds = ray.data.read_parquet(str(parquet)).repartition(blocks).materialize()
        assert pq.ParquetFile(str(parquet)).metadata.num_rows == args.records
        results: dict[str, list[float]] = {k: [] for k in ("w1", "w2", "p1", "p2", "scan")}
        steadies: dict[int, list[float]] = {1: [], 2: []}
        # the whole calls first: each leaves a materialized output of the dataset's size
        # for Ray to free, which took CPU from a pass timed right after it
        for rep in range(args.reps):
            for workers in (1, 2) if rep % 2 == 0 else (2, 1):
                results[f"w{workers}"].append(time_whole(guard, ds, workers, args.batch))
        ref = ray.put(snapshot(guard, SINK, "filter"))
        for rep in range(args.reps):
            for workers in (1, 2) if rep % 2 == 0 else (2, 1):
                alone, rate_now = time_pass(ds, ref, workers, args.batch)
                results[f"p{workers}"].append(alone)
                steadies[workers].append(rate_now)
            results["scan"].append(time_scan(guard, jsonl))
            print(f"rep {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items())
                  + f"; steady {steadies[1][-1]:,.0f} -> {steadies[2][-1]:,.0f} records/s "
                  f"({steadies[2][-1] / steadies[1][-1]:.2f}x)", flush=True)  # fmt: skip
    ray.shutdown()
    med = {k: statistics.median(v) for k, v in results.items()}
    rate = {k: args.records / v for k, v in med.items()}
    per_line = size / args.records
    print()
    print(f"{args.records:,} records, {args.reps} reps, medians; batch {args.batch}")
    print(f"{'path':<52} {'records/s':>10} {'MB/s':>7}")
    rows = (
        ("ray guard_dataset, 1 worker (whole call)", "w1"),
        ("ray guard_dataset, 2 workers (whole call)", "w2"),
        ("ray workers' pass alone, 1 worker", "p1"),
        ("ray workers' pass alone, 2 workers", "p2"),
        ("single-process scan (kairo-guard scan), 1 CPU", "scan"),
    )
    for label, key in rows:
        print(f"{label:<52} {rate[key]:>10,.0f} {rate[key] * per_line / 1e6:>7.1f}")
    whole_ratio, pass_ratio = med["w1"] / med["w2"], med["p1"] / med["p2"]
    steady = {k: statistics.median(v) for k, v in steadies.items()}
    steady_ratio = steady[2] / steady[1]
    print(f"steady rate while every worker runs: 1 worker {steady[1]:,.0f}/s, "
          f"2 workers {steady[2]:,.0f}/s")  # fmt: skip
    verdict = "PASS" if steady_ratio >= TARGET else "FAIL"
    print(f"2 workers / 1 worker: steady throughput {steady_ratio:.2f}x ({verdict}, target "
          f">= {TARGET}); whole call {whole_ratio:.2f}x, workers' pass with start-up "
          f"{pass_ratio:.2f}x")  # fmt: skip
    per_core = steady[1] * per_line  # bytes/s of one worker on one core
    cores = 1e12 / 3600 / per_core
    print(f"1 TB of such records in an hour at the 1-worker rate ({per_core / 1e6:.1f} MB/s a "
          f"core): {cores:,.0f} cores, {cores / 2:,.0f} machines of 2 cores")  # fmt: skip
    print(f"single-process scan: {rate['scan'] * per_line / 1e6:.1f} MB/s a core, "
          f"{1e12 / 3600 / (rate['scan'] * per_line):,.0f} cores for 1 TB/h")  # fmt: skip
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
