"""The scan engine (``kairo_guard.cli.records.scan_stream``): what it writes is what it checked."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from corpus import prose
from kg_testing import make_guard, mint_unchecked

from kairo_guard import Guard
from kairo_guard.cli import records
from kairo_guard.cli.records import scan_stream
from kairo_guard.core.content import sealed_line

SECRET = (
    "Acme board minutes: the Lisbon plant doubles output in the third quarter and forty "
    "engineers move to the battery line under a supplier agreement nobody has seen yet."
)


@pytest.fixture
def net(tmp_path: Path) -> Guard:
    """A guard whose fingerprint net holds one of acme's secrets."""
    g = make_guard(tmp_path / "net", pii_gate=False)
    g.index_content("acme", {"text": SECRET})
    return g


def test_when_a_duplicate_key_hides_a_secret_then_a_shared_sink_does_not_receive_it(
    net: Guard,
) -> None:
    public = {"text": "A public sentence about the weather in spring."}
    seal = mint_unchecked(net, public, data_class="operator_public")
    line = b'{"text":' + orjson.dumps(SECRET) + b',"text":"' + public["text"].encode()
    line += b'","_kairo":"' + seal.encode() + b'"}'
    out = io.BytesIO()
    run = net.checks.start(net.resolve_sink("s", kind="shared-training"), mode="filter")
    scan_stream(run, io.BytesIO(line + b"\n"), out, 1 << 20)
    assert b"Lisbon" not in out.getvalue()


def test_a_shared_sink_scan_of_mixed_lines_decides_each_as_the_line_by_line_scan(
    tmp_path: Path,
) -> None:
    """Runs of vetted lines are taken at once (natively); every other line, and a
    vetted line that is not clean, goes the long way, and the outcome, the output and
    its order are those of deciding each line alone."""
    g = make_guard(tmp_path / "g", pii_gate=False)
    public = [{"id": i, "text": f"Changelog entry {i}: faster startup."} for i in range(2600)]
    secret = prose("records-mixed", paragraphs=2)
    public[700]["text"] = f"Release notes. {secret[:600]}"  # indexed after it was vetted
    seals = g.vetting.vet(public, source="docs")
    assert all(isinstance(s, str) for s in seals)
    lines = [sealed_line(c, str(s)).rstrip(b"\n") for c, s in zip(public, seals, strict=True)]
    g.index_content("acme", {"text": secret})
    customer = g.label_record({"text": "acme notes"}, tenant="acme")
    others = {
        5: lines[5].replace(b"entry 5", b"entry 6"),  # changed: its digest no longer matches
        1030: orjson.dumps(customer),
        1500: b'{"text": "not json',
        1501: b"",
        1502: b'{"text":"' + b"x" * 5000 + b'"}',  # over the line limit below
        2000: b'{"text":"an unsealed public line"}',
    }
    for at, line in others.items():
        lines.insert(at, line)
    data = b"\n".join(lines) + b"\n"

    def scan(engine: Any) -> tuple[bytes, list[tuple[int, str]], int]:
        out = io.BytesIO()
        run = g.checks.start(g.resolve_sink("s", kind="shared-training"), mode="filter")
        report = engine(run, io.BytesIO(data), out, 4096, None)
        return out.getvalue(), [(v.index, v.rule) for v in report.violations], report.allowed

    batched, one_by_one = scan(records._scan_batches), scan(records._scan_lines)
    assert batched == one_by_one
    out, violations, allowed = batched
    assert allowed == 2600 - 1  # every vetted record but the one indexed since
    assert [rule for _, rule in violations] == [
        "seal.digest-mismatch", "fingerprint.tenant-content", "class.customer-content-shared",
        "input.malformed-json", "input.too-large", "seal.missing",
    ]  # fmt: skip
    assert secret[:600].encode() not in out
    assert out.count(b"\n") == allowed
