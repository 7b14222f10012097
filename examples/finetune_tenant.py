"""Prepare a tenant's fine-tune set (an Enterprise fine-tune under its agreement).

The sink is ``tenant-fine-tune`` for one tenant: it accepts only that tenant's own
verified content, and only while the tenant has an active fine-tune agreement
(``kairo-guard agreements grant TENANT``). Another tenant's record, an unlabeled one or
a missing agreement stops the build.

    KAIRO_GUARD_HOME=... KAIRO_GUARD_KEY=... python examples/finetune_tenant.py \\
        --tenant acme --input acme-docs.jsonl --out acme-ft.jsonl

Exit 0 when the set was written, 1 when the guard refused records, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from kairo_guard import Guard, IsolationViolation, KairoGuardError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        guard = Guard()
        records = [orjson.loads(line) for line in args.input.read_bytes().splitlines() if line]
    except (KairoGuardError, OSError, orjson.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with guard:

        @guard.sink(f"{args.tenant}-fine-tune", kind="tenant-fine-tune", tenant=args.tenant)
        def build_fine_tune_set(docs: list[dict[str, object]]) -> int:
            """Split documents into prompt/completion pairs for the tenant's model."""
            with args.out.open("wb") as out:
                for doc in docs:
                    text = str(doc.get("text", ""))
                    head, _, tail = text.partition(":")
                    pair = {"prompt": head.strip(), "completion": tail.strip()}
                    out.write(orjson.dumps(pair) + b"\n")
            return len(docs)

        try:
            count = build_fine_tune_set(records)
        except IsolationViolation as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
    print(f"wrote {count} pairs for {args.tenant} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
