"""Prepare a tenant's fine-tune set (an Enterprise fine-tune under its agreement).

Three steps, each checked by the guard:

1. build the tenant's dataset: only its own verified content (and operator data) is
   accepted, under an active fine-tune agreement (``kairo-guard agreements grant
   TENANT``); the dataset directory gets ``records.jsonl`` and a signed ``manifest.json``;
2. open it (manifest signature, record count and Merkle root verified) and hand it to
   the training function behind a ``tenant-fine-tune`` sink, which checks again, as
   training starts, that the dataset is the tenant's and its agreement still active;
3. with ``--model-id``, register the resulting model to the tenant, so serving code
   (``guard.check_model_access`` or ``GuardMiddleware(model_routes=...)``) serves it to
   that tenant only.

    KAIRO_GUARD_HOME=... KAIRO_GUARD_KEY=... python examples/finetune_tenant.py \\
        --tenant acme --input acme-docs.jsonl --out acme-ft.jsonl

Exit 0 when the set was written, 1 when the guard refused records, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import orjson

from kairo_guard import (
    DatasetError,
    Guard,
    IsolationViolation,
    KairoGuardError,
    VerifiedDataset,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--dataset-dir",
        type=Path,
        help="Where to write the signed dataset (default: a new temporary directory).",
    )
    parser.add_argument("--model-id", help="Register the fine-tuned model under this id.")
    args = parser.parse_args(argv)
    try:
        guard = Guard()
        records = [orjson.loads(line) for line in args.input.read_bytes().splitlines() if line]
    except (KairoGuardError, OSError, orjson.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dataset_dir = args.dataset_dir or Path(tempfile.mkdtemp(prefix=f"{args.tenant}-dataset-"))
    with guard:
        # 1. the dataset: refused records (another tenant's, unlabeled, expired) or a
        # missing agreement stop here, and nothing is written
        builder = guard.tenant_dataset(args.tenant)
        builder.add_all(records)
        try:
            manifest = builder.write(dataset_dir)
        except IsolationViolation as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        except DatasetError as exc:  # no agreement (1), or an unusable directory (2)
            print(f"refused: {exc}", file=sys.stderr)
            return 1 if exc.rule == "agreement.inactive" else 2

        # 2. training: the sink verifies the dataset again before the function runs
        @guard.sink(f"{args.tenant}-fine-tune", kind="tenant-fine-tune", tenant=args.tenant)
        def build_fine_tune_set(dataset: VerifiedDataset) -> int:
            """Split documents into prompt/completion pairs for the tenant's model."""
            count = 0
            with args.out.open("wb") as out:
                for doc in dataset:
                    text = str(doc.get("text", ""))
                    head, _, tail = text.partition(":")
                    pair = {"prompt": head.strip(), "completion": tail.strip()}
                    out.write(orjson.dumps(pair) + b"\n")
                    count += 1
            return count

        try:
            count = build_fine_tune_set(guard.open_dataset(dataset_dir))
        except (IsolationViolation, KairoGuardError) as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1

        # 3. the model: bound to the tenant and the manifest it came from
        if args.model_id:
            guard.register_model(args.model_id, dataset=manifest, owner=args.tenant)
    print(f"wrote {count} pairs for {args.tenant} to {args.out} (dataset {manifest.dataset_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
