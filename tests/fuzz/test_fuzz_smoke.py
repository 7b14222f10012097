"""Every fuzz harness, briefly, inside ``make test``: its seeds, mutants of them, atheris.

The documented runs of 1,000,000 executions a harness are ``make fuzz``
(``benchmarks/RESULTS.md``, fuzzing). Here each harness's ``test_one_input`` runs over
its seed corpus, over inputs hypothesis derives from the seeds (bytes flipped,
inserted, deleted, seeds spliced) or makes up, and under atheris itself for a short
libFuzzer run: an invariant that breaks (a forged seal verified, a line lost, an
undocumented exception) fails the test, with the input that broke it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.harness import seeds
from fuzz.targets import TARGETS, entry

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = 1000
"""Generated inputs per harness (hypothesis, derandomized: the same on every run)."""
ATHERIS_RUNS = 400


@st.composite
def mutants(draw: st.DrawFn, pool: list[bytes]) -> bytes:
    """A seed with a few edits, two seeds spliced, or bytes made up."""
    how = draw(st.sampled_from(["edit", "edit", "edit", "splice", "made up"]))
    if how == "made up":
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(pool)))
    if how == "splice":
        other = draw(st.sampled_from(pool))
        return bytes(
            data[: draw(st.integers(0, len(data)))] + other[draw(st.integers(0, len(other))) :]
        )
    edits = st.tuples(
        st.sampled_from("flip insert delete"), st.integers(0, 1 << 16), st.integers(0, 255)
    )
    for kind, where, byte in draw(st.lists(edits, min_size=1, max_size=6)):
        at = where % (len(data) + 1)
        if kind == "insert":
            data[at:at] = bytes([byte])
        elif data and kind == "delete":
            del data[at % len(data)]
        elif data:
            data[at % len(data)] ^= byte or 1
    return bytes(data)


@pytest.mark.parametrize("target", list(TARGETS))
def test_when_each_seed_is_run_then_every_invariant_holds(target: str) -> None:
    found = seeds(target)
    assert len(found) >= 10  # genuine seals, lines, keys and tokens among them
    for data in found:
        entry(target)(data)


@pytest.mark.parametrize("target", list(TARGETS))
def test_when_seeds_are_mutated_then_every_invariant_holds(target: str) -> None:
    check = entry(target)

    @settings(
        max_examples=MUTANTS,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutants(seeds(target)))
    def run(data: bytes) -> None:
        check(data)

    run()


@pytest.mark.parametrize("target", list(TARGETS))
def test_when_atheris_fuzzes_a_harness_briefly_then_it_finds_nothing(
    target: str, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "fuzz", target, f"-runs={ATHERIS_RUNS}", "-seed=1",
            "-timeout=10", "-max_len=10240", f"-artifact_prefix={tmp_path}/artifact-",
            str(tmp_path), str(ROOT / "fuzz" / "corpus" / target)]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Done {ATHERIS_RUNS} runs" in done.stderr
    assert not list(tmp_path.glob("artifact-*"))
