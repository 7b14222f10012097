"""Bad input for the CLI tests: every kind of bad line, and how to run the real script.

Each :class:`Bad` kind is made by a function of a :class:`Minter` (sealed lines with the
CLI's own key) and names the rule ``scan`` and ``label`` must each give it.
"""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kg_testing import make_guard, sealed_record

from kairo_guard import Guard, KeyRing
from kairo_guard.core.content import content_digest
from kairo_guard.core.keys import PURPOSE_SEAL

SCRIPT = Path(sys.executable).parent / "kairo-guard"
BIG_INT = b"123456789012345678901234567890"
MB = 1024 * 1024
SCAN = ("scan", "--sink", "shared-training")
LABEL = ("label", "--tenant", "acme", "--class", "customer_content")


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the installed ``kairo-guard`` script in a real process (cwd and env as set)."""
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        errors="replace",
        env=dict(os.environ),
        timeout=120,
        check=False,
    )


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    """Assert that a run ended in a message, not a crash."""
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stdout
    assert "internal error" not in proc.stderr


def where(entries: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """Return the (line, rule) of each entry of a report's violations or refusals."""
    return [(e["line"], e["rule"]) for e in entries]


@dataclass
class Minter:
    """Makes sealed lines with the CLI's own key ring and state directory."""

    guard: Guard

    def operator(self, record: dict[str, Any]) -> bytes:
        return orjson.dumps(sealed_record(self.guard, record, data_class="operator_public"))

    def customer(self, record: dict[str, Any], tenant: str = "acme") -> dict[str, Any]:
        return self.guard.label_record(record, tenant=tenant)


def forged_line(m: Minter) -> bytes:
    """A kg1 seal claiming operator_public for exactly this content, made with the
    CLI's own HMAC key: what any process that verifies could mint, were HMAC seals of
    permitting classes honoured."""
    content = {"text": "acme's secret plan"}
    return orjson.dumps({**content, "_kairo": hmac_permitting_seal(m.guard.keys, content)})


def hmac_permitting_seal(ring: KeyRing, content: object) -> str:
    """A well-formed kg1 seal of ``operator_public`` under ``ring``'s signing key."""
    kid = ring.signing_key_id
    signed = f"kg1.{kid}.{content_digest(content)}~~operator_public~1700000000~~docs"
    tag = hmac.digest(ring.subkey(PURPOSE_SEAL, kid), signed.encode(), "sha256")
    return f"{signed}.{base64.urlsafe_b64encode(tag).rstrip(b'=').decode()}"


def truncated_line(m: Minter) -> bytes:
    """operator_public data whose seal lost its last characters."""
    record = sealed_record(m.guard, {"text": "public"}, data_class="operator_public")
    return orjson.dumps({**record, "_kairo": record["_kairo"][:-5]})


def foreign_key_line(key_id: str) -> Callable[[Minter], bytes]:
    """operator_public data sealed by a key the CLI does not hold."""

    def make(m: Minter) -> bytes:
        home = Path(m.guard.settings.home).parent / f"other-{key_id}"
        with make_guard(home, ring=KeyRing.generate(key_id)) as other:
            record = sealed_record(
                other, {"text": f"public {key_id}"}, data_class="operator_public"
            )
        return orjson.dumps(record)

    return make


def big_int_under_seal(m: Minter) -> bytes:
    """A valid operator seal for {"n": 1}, moved onto a line whose n is past 64 bits."""
    seal: str = sealed_record(m.guard, {"n": 1}, data_class="operator_public")["_kairo"]
    return b'{"n":' + BIG_INT + b',"_kairo":"' + seal.encode() + b'"}'


@dataclass(frozen=True)
class Bad:
    """One kind of bad line and the rule each command must give it."""

    make: Callable[[Minter], bytes]
    scan_rule: str
    label_rule: str


BAD: dict[str, Bad] = {
    "malformed-json": Bad(
        lambda m: b'{"text": "unterminated', "input.malformed-json", "input.malformed-json"
    ),
    "trailing-garbage": Bad(
        lambda m: b'{"a": 1} x', "input.malformed-json", "input.malformed-json"
    ),
    "invalid-utf8": Bad(
        lambda m: b'{"text": "caf\xe9 \xff"}', "input.invalid-utf8", "input.invalid-utf8"
    ),
    "nested-100000-deep": Bad(
        lambda m: b"[" * 100_000 + b"]" * 100_000, "input.too-deep", "input.too-deep"
    ),
    "json-string": Bad(lambda m: b'"hello"', "seal.missing", "input.not-an-object"),
    "json-array": Bad(lambda m: b"[1,2]", "seal.missing", "input.not-an-object"),
    "forged-seal": Bad(forged_line, "seal.invalid", "label.already-sealed"),
    "truncated-seal": Bad(truncated_line, "seal.invalid", "label.already-sealed"),
    "seal-from-another-key": Bad(foreign_key_line("k1"), "seal.invalid", "label.already-sealed"),
    "seal-from-unknown-key-id": Bad(foreign_key_line("k9"), "seal.invalid", "label.already-sealed"),
    "seal-not-a-string": Bad(
        lambda m: b'{"text": "x", "_kairo": {"class": "operator_public"}}',
        "seal.invalid",
        "label.already-sealed",
    ),
    "int-past-64-bits": Bad(
        lambda m: b'{"n": ' + BIG_INT + b"}", "seal.missing", "input.inexact-number"
    ),
    "int-past-64-bits-under-a-seal": Bad(
        big_int_under_seal, "seal.digest-mismatch", "input.inexact-number"
    ),
}


def write_lines(path: Path, lines: list[bytes]) -> Path:
    """Write raw lines to ``path``; return the path."""
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path
