"""Write the seed corpora: ``python -m fuzz.seeds [target ...]``.

Each harness names its seeds (``seed_inputs()``): genuine seals, lines, keys and tokens
under the harnesses' fixed keys, and near misses. Seeds are files named after them in
``fuzz/corpus/<target>/``; the campaign writes what it discovers elsewhere
(``build/fuzz/``), so this folder holds only what is reviewed.
"""

from __future__ import annotations

import sys

from fuzz.harness import CORPUS
from fuzz.targets import TARGETS, harness


def write_seeds(target: str) -> int:
    """Write those of ``target``'s seeds not written yet (tokens hold random nonces: a
    seed once written stays as it is); return how many were written."""
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    found: dict[str, bytes] = harness(target).seed_inputs()
    written = 0
    for name, data in found.items():
        path = folder / f"seed-{name}"
        if not path.exists():
            path.write_bytes(data)
            written += 1
    return written


def main(argv: list[str]) -> int:
    """Write the seeds of the targets named (all by default)."""
    for target in argv or list(TARGETS):
        print(f"{target}: {write_seeds(target)} new seeds in {CORPUS / target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
