"""What the fuzz harnesses found in the library (``benchmarks/RESULTS.md``, fuzzing), each as the
smallest test that shows it.

Each failed when it was found (as ``xfail(strict=True)``) and passes since the fix; a
finding not fixed yet is listed in ``KNOWN_FINDINGS`` in ``fuzz/harness.py``, which its
harness steps over.
"""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from kg_testing import make_guard

from kairo_guard import Guard, KeyRing
from kairo_guard.cli.records import scan_stream
from kairo_guard.core.content import split_sealed_line
from kairo_guard.core.types import Mode
from kairo_guard.ingest.apikeys import new_api_key
from kairo_guard.ingest.middleware import GuardMiddleware

# F1: a line whose seal field is not ASCII, between two unsealed ones
NON_ASCII_SEAL = b'{"text":"ok"}\n{"text":"hello","_kairo":"\xc3\xa9"}\n{"text":"after"}\n'


@pytest.mark.parametrize("kind", ["tenant-fine-tune", "shared-training"])
def test_when_a_line_has_a_non_ascii_seal_then_the_scan_refuses_it_and_goes_on(
    guard: Guard, kind: str
) -> None:
    tenant = "acme" if kind == "tenant-fine-tune" else None
    run = guard.checks.start("fuzz-f1", kind=kind, tenant=tenant, mode=Mode.FILTER)
    out = io.BytesIO()
    report = scan_stream(run, io.BytesIO(NON_ASCII_SEAL), out, 1 << 20)
    assert (report.total, report.allowed) == (3, 0)
    assert [v.index for v in report.violations] == [0, 1, 2]
    assert report.violations[1].rule == "seal.invalid"


def test_when_a_line_is_not_the_sealed_form_then_it_is_not_split_as_one() -> None:
    assert split_sealed_line(b'{,"_kairo":"kg1.k1.x"}') is None


@pytest.mark.parametrize(
    ("content", "cut"), [({}, b"{"), (b"a request body}", b"a request body")], ids=["{}", "bytes"]
)
def test_when_a_sealed_line_is_not_json_then_the_scan_does_not_pass_it(
    guard: Guard, content: object, cut: bytes
) -> None:
    guard.grant_agreement("acme")
    seal = guard.seal(content, tenant="acme").encode()
    line = cut + b',"_kairo":"' + seal + b'"}\n'
    run = guard.checks.start("fuzz-f3", kind="tenant-fine-tune", tenant="acme", mode=Mode.FILTER)
    out = io.BytesIO()
    scan_stream(run, io.BytesIO(line), out, 1 << 20)
    for written in out.getvalue().splitlines():
        orjson.loads(written)  # every line a scan passes is JSON


async def _app(scope: object, receive: object, send: object) -> None:  # never called
    return None


def test_when_a_content_length_has_leading_zeros_then_the_gate_and_python_agree(
    tmp_path: Path, ring: KeyRing
) -> None:
    with make_guard(tmp_path / "state", ring=ring, pii_gate=False) as guard:
        key = new_api_key(guard.store, "acme")
        app = GuardMiddleware(_app, guard=guard, indexer="none")
        fast, verifier = app._fast, app._verifier
        assert fast is not None
        assert verifier is not None
        assert verifier.verify(key) == "acme"  # in the cache the fast path reads
        length = b"0" * 16 + b"120"
        headers = [(b"authorization", b"Bearer " + key.encode()), (b"content-length", length)]
        scope = {"type": "http", "path": "/documents", "root_path": "",
                 "raw_path": b"/documents", "headers": headers}  # fmt: skip
        assert fast.admit_python(scope) is None  # both leave it to the general path
        assert fast.admit(scope) is None
        headers[1] = (b"content-length", length[1:])  # 18 digits: both admit it
        assert fast.admit_python(scope) == ("acme", 120)
        assert fast.admit(scope) == ("acme", 120)
