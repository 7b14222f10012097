"""What the CLI tests share: JSONL files, reports, and records minted with the CLI's key."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import orjson
from kg_testing import make_guard, sealed_record

from kairo_guard import KeyRing

SCRIPT = Path(sys.executable).parent / "kairo-guard"
"""The installed ``kairo-guard`` script, for runs in a real process."""
ACME = ("--tenant", "acme", "--class", "customer_content")
"""``label`` options for acme's customer content."""


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` as JSONL to ``path``; return the path."""
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Return the records of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def load(path: Path) -> dict[str, Any]:
    """Return a JSON report written with ``--report``."""
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def where(report: dict[str, Any]) -> list[tuple[int, str]]:
    """Return the (line, rule) of each violation of a scan report."""
    return [(v["line"], v["rule"]) for v in report["violations"]]


def operator_lines(home: Path, ring: KeyRing, records: list[dict[str, Any]]) -> list[bytes]:
    """operator_public records minted with the CLI's key, as JSONL lines."""
    with make_guard(home, ring=ring) as guard:
        return [
            orjson.dumps(sealed_record(guard, r, data_class="operator_public")) for r in records
        ]


DOCS = [
    {"doc": "contract-17", "text": "Acme supply agreement: 40,000 units at $3.10."},
    {"doc": "memo-3", "text": "Acme Q3 plan: expand the Lisbon plant."},
    {"doc": "ticket-9", "text": "Réclamation client: livraison en retard 🚚"},
]
