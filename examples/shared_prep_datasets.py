"""Prepare a shared training set with Hugging Face ``datasets``: blocked while customer
records are in it, written once they are filtered out.

1. operator data (public how-to notes, vetted in one shard as ``kairo-guard label
   --class operator_public`` does) and two customer records that ended up in the same
   export become one ``datasets.Dataset``;
2. ``save_to_disk`` to the shared destination is a sink: every record is checked at
   ``shared-training`` first, and the customer records refuse the write (nothing is
   written);
3. ``guard_dataset`` in ``filter`` mode drops them; the same ``save_to_disk`` then
   writes the operator data, which loads back with its seals.

    KAIRO_GUARD_HOME=... KAIRO_GUARD_KEY=... python examples/shared_prep_datasets.py --out DIR

The state directory needs a vetting key (``kairo-guard keys init``). Exit 0 when the
first write was refused and the filtered set was written, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from datasets import load_from_disk

from kairo_guard import SEAL_FIELD, Guard, IsolationViolation
from kairo_guard.integrations.datasets import guard_dataset, save_to_disk, sealed_dataset

NOTES = [
    "Restart the worker after changing the cache size.",
    "The export job retries three times before it reports an error.",
    "Index rebuilds run at night and take about ten minutes.",
    "Use the staging route to try a new model before it serves traffic.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the shared destination")
    args = parser.parse_args(argv)
    with Guard(home=os.environ["KAIRO_GUARD_HOME"]) as guard:
        contents = [{"text": note, "source": "how-to"} for note in NOTES]
        seals = guard.vetting.vet(contents, source="how-to")
        operator = [{**c, SEAL_FIELD: s} for c, s in zip(contents, seals, strict=True)]
        customer = [
            guard.label_record({"text": "Acme churn list for Q3", "source": "crm"}, tenant="acme"),
            guard.label_record(
                {"text": "Globex contract draft", "source": "docs"}, tenant="globex"
            ),
        ]
        ds = sealed_dataset([*operator[:2], *customer, *operator[2:]])

        try:
            save_to_disk(ds, args.out, guard, sink="shared-training")
        except IsolationViolation as exc:
            print(f"save_to_disk refused: {dict(exc.report.by_rule)}; written: {args.out.exists()}")
        else:
            print("customer records reached the shared destination", file=sys.stderr)
            return 1

        reports: list[Any] = []
        clean = guard_dataset(ds, guard, "shared-training", mode="filter", on_report=reports.append)
        save_to_disk(clean, args.out, guard, sink="shared-training")
        back = load_from_disk(str(args.out))
        print(f"filtered {reports[0].blocked} customer records; wrote {len(back)} records")
        return 0 if sorted(back["text"]) == sorted(NOTES) else 1


if __name__ == "__main__":
    raise SystemExit(main())
