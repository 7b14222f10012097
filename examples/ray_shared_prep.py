"""Prepare a shared training set with Ray Data: vetted operator data in, laundered
customer content out.

What it does, end to end, on a local Ray cluster:

1. generates ``--mb`` megabytes of operator records (release notes) as JSONL, vetted
   in shards of 10,000 as ``kairo-guard label --class operator_public`` does; one of
   them quotes a customer's document that ingestion receives only afterwards (so the
   shard was clean when vetted: the record is customer content laundered as operator
   data, and the fingerprints indexed since the shard's watermark give it away);
2. reads the JSONL with ``ray.data.read_json`` and runs
   ``kairo_guard.integrations.ray.guard_dataset`` at ``shared-training`` in
   ``enforce`` mode: the job fails with a report naming the rule;
3. runs it again in ``filter`` mode and writes what passed to ``--out`` (Parquet): every
   record but the laundered one.

    KAIRO_GUARD_HOME=... KAIRO_GUARD_KEY=... python examples/ray_shared_prep.py \\
        --mb 300 --workdir /tmp/ray-prep --out /tmp/ray-prep/shared.parquet

The state directory needs a vetting key (``kairo-guard keys init``). Exit 0 when the
filtered set was written after the enforce run refused the laundered record, 1
otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import ray

from kairo_guard import CheckReport, Guard, IsolationViolation
from kairo_guard.core.content import sealed_line
from kairo_guard.integrations.ray import guard_dataset

SHARD = 10_000
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
    "usage",
    "report",
    "summary",
    "policy",
    "onboarding",
    "table",
    "error",
    "resolved",
    "build",
    "deploy",
]
CUSTOMER_DOCUMENT = (
    "Acme Robotics board memo, not for distribution: the Lisbon plant doubles its "
    "output in the third quarter, forty engineers move to the battery line, and the "
    "supplier agreement with Northwind stays confidential until the merger closes in "
    "November; the negotiating range is eleven to fourteen million."
)


def generate(guard: Guard, path: Path, megabytes: float, seed: int = 5) -> tuple[int, int]:
    """Write vetted operator records until ``megabytes``; return (records, laundered id)."""
    rng = random.Random(seed)
    written, n, laundered = 0, 0, -1
    with path.open("wb") as out:
        while written < megabytes * 1e6:
            contents: list[dict[str, object]] = []
            for _ in range(SHARD):
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(14, 32)))
                contents.append({"id": n, "kind": "release-note", "text": text.capitalize()})
                n += 1
            if laundered < 0:  # one record quotes the document ingestion has not seen yet
                laundered = n - SHARD // 2
                contents[len(contents) // 2]["text"] = f"Notes. {CUSTOMER_DOCUMENT}"
            for content, seal in zip(
                contents, guard.vetting.vet(contents, source="notes"), strict=True
            ):
                if not isinstance(seal, str):
                    raise SystemExit(f"vetting refused a generated record: {seal}")
                line = sealed_line(content, seal)
                out.write(line)
                written += len(line)
    return n, laundered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=2.0, help="JSONL to generate, megabytes")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    source = args.workdir / "operator.jsonl"
    with Guard(home=os.environ["KAIRO_GUARD_HOME"]) as guard:
        t = time.perf_counter()
        records, laundered = generate(guard, source, args.mb)
        size = source.stat().st_size / 1e6
        took = time.perf_counter() - t
        print(f"generated {records:,} vetted records, {size:.1f} MB in {took:.1f} s; "
              f"record {laundered} quotes a customer document")  # fmt: skip
        # ingestion receives the customer's document (sealed as acme's and indexed)
        guard.label_record({"text": CUSTOMER_DOCUMENT, "title": "board memo"}, tenant="acme")

        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)  # fmt: skip
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            ds = ray.data.read_json(str(source))
            try:
                guard_dataset(ds, guard, sink="shared-training", mode="enforce")
            except IsolationViolation as exc:
                print(f"enforce: job failed as it should: {dict(exc.report.by_rule)}")
            else:
                print("enforce: the laundered record was NOT caught", file=sys.stderr)
                return 1
            t = time.perf_counter()
            reports: list[CheckReport] = []
            kept = guard_dataset(ds, guard, sink="shared-training", mode="filter",
                                 on_report=reports.append)  # fmt: skip
            kept.write_parquet(str(args.out))
            report = reports[0]
            print(f"filter: {report.allowed:,} of {report.total:,} records passed in "
                  f"{time.perf_counter() - t:.1f} s; by rule: {dict(report.by_rule)}")  # fmt: skip
            ids = {
                r["id"]
                for r in ray.data.read_parquet(str(args.out)).select_columns(["id"]).take_all()
            }
        finally:
            ray.shutdown()
    ok = laundered not in ids and len(ids) == records - 1
    print(f"wrote {len(ids):,} records to {args.out}; laundered record kept out: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
