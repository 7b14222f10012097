"""The PII gate over two processes, and its batch-level shortcuts: same results, faster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import presidio_analyzer  # noqa: F401 - the pii extra: missing, these tests fail, never skip
import pytest

from kairo_guard.core.exceptions import ConfigError
from kairo_guard.detect.pii.gate import ENV_PII_PROCESSES, MIN_PARALLEL_TEXTS, PiiFinding, PiiGate

# benchmarks/ holds the PII corpus generator (not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from pii_corpus import corpus

pytestmark = pytest.mark.storeless  # opens no state store: runs once, in the main pass


@pytest.fixture(scope="module")
def gate() -> PiiGate:
    return PiiGate()


def _spans(gate: PiiGate, texts: list[str]) -> list[Any]:
    return [
        None if found is None else sorted((r.entity_type, r.start, r.end, r.score) for r in found)
        for found in gate.scan_spans(texts)
    ]


def test_when_two_processes_then_results_equal_one_process_even_if_the_worker_dies(
    gate: PiiGate,
) -> None:
    texts = [s.text for s in corpus(MIN_PARALLEL_TEXTS + 16, seed=21)] + ["ab:" * 400, ""]
    expected = _spans(gate, texts)
    assert any(expected)
    assert expected[-2:] == [None, []]  # too long to analyse; empty
    two = PiiGate(processes=2)  # a real worker process (spawned), with its own model
    try:
        assert _spans(two, texts) == expected
        two._pool.close()  # the worker is gone: its shard is analysed here instead
        assert _spans(two, texts) == expected
    finally:
        two.close()
    assert _spans(two, texts) == expected  # closed: one process


@pytest.mark.parametrize("value", ["two", "0"])
def test_when_processes_setting_is_bad_then_config_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(ENV_PII_PROCESSES, value)
    with pytest.raises(ConfigError, match="positive integer"):
        PiiGate()


def test_identical_texts_in_a_batch_are_analysed_once(
    gate: PiiGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    analyze = gate._analyzer.analyze

    def counting(**kwargs: Any) -> Any:
        calls.append(kwargs["text"])
        return analyze(**kwargs)

    monkeypatch.setattr(gate._analyzer, "analyze", counting)
    texts = ["mail bob@example.org"] * 5 + ["call +1 415-555-0132"] * 3
    results = gate.scan(texts)
    assert results == [PiiFinding(("EMAIL_ADDRESS",))] * 5 + [PiiFinding(("PHONE_NUMBER",))] * 3
    assert sorted(calls) == ["call +1 415-555-0132", "mail bob@example.org"]
    spans = gate.scan_spans(texts[:2])
    assert spans[0] is not spans[1]  # each text gets its own list
