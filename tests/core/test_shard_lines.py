"""The scan's hot path over lines of vetted shards (:mod:`kairo_guard.core.shard_lines`):
the native ``members`` decides exactly as the Python specification, on every kind of
line a file can hold, and neither takes a line whose bytes are not a clean record."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairo_guard.core import shard_lines
from kairo_guard.core.jsonl import BadLine
from kairo_guard.core.shard_lines import MEMBER, may_be_member, members_python

native = pytest.importorskip(
    "kairo_guard.core._merkle", reason="the native extension is built at install"
)
OUTCOME = object()


def _line(content: dict[str, Any], shard: str, *, digest: str | None = None) -> tuple[bytes, str]:
    body = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    digest = digest or hashlib.sha256(body).hexdigest()
    return body[:-1] + b',"_kairo":"kp1.' + shard.encode() + b"." + digest.encode() + b'"}', digest


def _shard_id(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(32))


MUTATIONS = (
    "none", "content", "digest", "upper", "unknown-shard", "dirty", "not-indexed", "bad-line",
    "short", "dot", "tail", "str",
)  # fmt: skip


def _corpus(seed: int, n: int, mutated: float) -> tuple[list[Any], dict[str, Any], list[str]]:
    """Lines of two shards (and one not in the view), some of them mutated."""
    rng = random.Random(seed)
    shards = [_shard_id(rng) for _ in range(3)]
    view: dict[str, Any] = {
        s: ({}, set(), f"rule-{k}", None if k else "owner") for k, s in enumerate(shards[:2])
    }
    lines: list[Any] = []
    kinds: list[str] = []
    for i in range(n):
        shard = rng.choice(shards[:2])
        content = {"id": i, "text": f"public note {rng.random()}", "lang": "en"}
        line: Any
        line, digest = _line(content, shard)
        index, dirty = view[shard][0], view[shard][1]
        index[digest] = len(index)
        kind = rng.choice(MUTATIONS[1:]) if rng.random() < mutated else "none"
        if kind == "content":
            line = line.replace(b"public", b"Public", 1)
        elif kind == "digest":
            line = _line(content, shard, digest="0" * 64)[0]
        elif kind == "upper":
            line = _line(content, shard, digest=digest.upper())[0]
        elif kind == "unknown-shard":
            line = _line(content, shards[2])[0]
        elif kind == "dirty":
            dirty.add(index[digest])
        elif kind == "not-indexed":
            del index[digest]
        elif kind == "bad-line":
            line = BadLine("input.too-large", "too large", digest)
        elif kind == "short":
            line = line[-60:]
        elif kind == "dot":
            line = line.replace(b"." + digest.encode(), b":" + digest.encode())
        elif kind == "tail":
            line = line + b" "
        elif kind == "str":
            line = line.decode()
        lines.append(line)
        kinds.append(kind)
    return lines, view, kinds


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(0, 60),
    mutated=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    start=st.integers(0, 70),
    span=st.integers(-5, 80),
    position=st.integers(0, 10**6),
)
def test_native_members_decides_as_the_python_specification(
    seed: int, n: int, mutated: float, start: int, span: int, position: int
) -> None:
    lines, view, kinds = _corpus(seed, n, mutated)
    want = members_python(lines, start, start + span, view, OUTCOME, position)
    got = native.members(lines, start, start + span, view, OUTCOME, position)
    assert got == want
    end, rows = got
    # what was taken is exactly the clean lines from start, in order, numbered in place
    assert end == start + len(rows) or (end == start and not rows)
    assert all(kinds[start + k] == "none" for k in range(len(rows)))
    assert [r[0] for r in rows] == [position + k for k in range(len(rows))]
    if end < min(len(lines), start + span) and end >= start:
        assert kinds[end] != "none"  # a run ends only at a line that is not clean


def test_a_run_stops_at_the_first_line_that_is_not_clean_and_names_each_shard() -> None:
    lines, view, _kinds = _corpus(7, 40, 0.0)
    lines[25] = lines[25].replace(b"public", b"PUBLIC", 1)
    end, rows = shard_lines.members(lines, 0, 40, view, OUTCOME, 100)
    assert end == 25
    assert len(rows) == 25
    for line, (number, outcome, rule, digest, owner) in zip(lines, rows, strict=False):
        shard = orjson.loads(line)["_kairo"][4:36]
        assert outcome is OUTCOME
        assert (rule, owner) == view[shard][2:]
        assert digest == orjson.loads(line)["_kairo"][37:]
        assert number >= 100
    assert shard_lines.members(lines, 25, 40, view, OUTCOME, 0) == (25, [])
    assert shard_lines.members(lines, 26, 40, view, OUTCOME, 0)[0] == 40


def test_a_malformed_view_or_argument_is_an_error_not_an_allow() -> None:
    lines, view, _ = _corpus(3, 4, 0.0)
    shard = next(iter(view))
    broken = {s: (e[0], list(e[1]), e[2], e[3]) if s == shard else e for s, e in view.items()}
    first = next(i for i, line in enumerate(lines) if shard.encode() in line)
    with pytest.raises(TypeError, match="view entries"):  # looked at when a line of it comes
        native.members(lines, first, 4, broken, OUTCOME, 0)
    with pytest.raises(ValueError, match="negative"):
        native.members(lines, -1, 4, view, OUTCOME, 0)
    with pytest.raises(TypeError):
        native.members(tuple(lines), 0, 4, view, OUTCOME, 0)


def test_may_be_member_reads_only_the_tail() -> None:
    line, _ = _line({"text": "x"}, "a" * 32)
    assert MEMBER in line
    assert may_be_member(line)
    assert not may_be_member(line[:-1])
    assert not may_be_member(b'{"_kairo":"kg1.x"}')
