"""What indexing costs a seal: sealing customer content, with and without the net.

Every seal of customer content indexes its fingerprints first (no seal without index).
This runs, side by side in one process and alternated over rounds, the guard's
``label_record`` of distinct ~1 KiB records (fingerprinting plus one SQLite write
transaction a record) and the same ``Sealer`` with an index that does nothing (what a
seal cost before it indexed), and reports the medians and their ratio. The gap is what
the batched indexer of the ingestion spool is meant to remove.

Run: ``.venv/bin/python benchmarks/bench_seal.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from kairo_guard import Guard, KeyRing
from kairo_guard.enforce.sealing import Sealer

TEXT = "The quarterly plan covers warehouses, hiring and supplier terms in detail. " * 14


class _NoIndex:
    def index(self, tenant: str, content: object, *, digest: str | None = None) -> int:
        return 0


def _per_record_us(seal: object, records: int, offset: int) -> float:
    label = getattr(seal, "label_record")  # noqa: B009 - Guard and Sealer alike
    start = time.perf_counter()
    for i in range(records):
        label({"id": offset + i, "text": f"{offset + i} {TEXT}"}, tenant="acme")
    return (time.perf_counter() - start) / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200, help="records a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    with Guard(home=tempfile.mkdtemp(), key=KeyRing.generate(), pii_gate=False) as guard:
        bare = Sealer(
            guard.codec,
            index=_NoIndex(),
            pseudonym=guard.keys.pseudonym,
            audit=guard.audit,
            clock=guard.clock,
            retention=guard.retention.seconds,
        )
        indexed: list[float] = []
        unindexed: list[float] = []
        for r in range(args.rounds):  # alternate which side goes first
            sides = [(guard, indexed), (bare, unindexed)]
            for sealer, out in sides if r % 2 == 0 else reversed(sides):
                out.append(_per_record_us(sealer, args.records, (2 * r + len(out)) * 10**6))
    result = {
        "record_bytes": len(TEXT) + 20,
        "indexed_us": statistics.median(indexed),
        "unindexed_us": statistics.median(unindexed),
        "ratio": statistics.median(indexed) / statistics.median(unindexed),
        "rounds": {"indexed": indexed, "unindexed": unindexed},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"label_record of a distinct ~1 KiB record: indexed {result['indexed_us']:.0f} us, "
            f"without the net {result['unindexed_us']:.0f} us, ratio {result['ratio']:.1f}x"
        )


if __name__ == "__main__":
    main()
