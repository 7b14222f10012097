"""The scan engine (``kairo_guard.cli.records.scan_stream``): what it writes is what it checked."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from kg_testing import make_guard, mint_unchecked

from kairo_guard import Guard
from kairo_guard.cli.records import scan_stream

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
