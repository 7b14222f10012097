"""Prepare a training set for the shared request router, guarded by kairo-guard.

The router model is shared by every customer, so its training data may hold only
verified operator data and anonymized telemetry. The ``@guard.sink`` decorator checks
every record before ``build_training_set`` sees it; in enforce mode one customer
record stops the whole build.

    KAIRO_GUARD_HOME=... KAIRO_GUARD_KEY=... python examples/train_shared_router.py \\
        --input examples.jsonl --out router-train.jsonl [--mode filter]

Exit 0 when the set was written, 1 when the guard refused records, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson

from kairo_guard import Guard, IsolationViolation, KairoGuardError


def read_jsonl(path: Path) -> Iterator[dict[str, object]]:
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mode", choices=["enforce", "filter", "observe"], default="enforce")
    args = parser.parse_args(argv)
    try:
        guard = Guard()
    except KairoGuardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with guard:

        @guard.sink("router-train", kind="shared-training", mode=args.mode)
        def build_training_set(records: Iterator[dict[str, object]]) -> int:
            """Turn routing examples into (features, label) rows; consumes lazily."""
            count = 0
            with args.out.open("wb") as out:
                for record in records:
                    row = {"features": record.get("features"), "label": record.get("route")}
                    out.write(orjson.dumps(row) + b"\n")
                    count += 1
            return count

        try:
            count = build_training_set(read_jsonl(args.input))
        except IsolationViolation as exc:
            args.out.unlink(missing_ok=True)  # never leave a partial shared training set
            print(f"refused: {exc}", file=sys.stderr)
            for v in exc.report.violations[:5]:
                print(f"  record {v.index}: {v.rule}: {v.reason}", file=sys.stderr)
            return 1
    print(f"wrote {count} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
