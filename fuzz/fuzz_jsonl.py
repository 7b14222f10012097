"""Fuzz the JSONL reader: line splitting, line parsing and the scan engine over them.

The first byte picks what the rest of the input is:

0. a JSONL stream read in blocks of fuzzed sizes (:func:`iter_raw_lines`,
   :func:`iter_lines`) under a fuzzed ``max_bytes``;
1. one line for :func:`parse_line`, judged against the standard library's parser;
2. a hostile nesting depth, read by :func:`parse_line` and scanned;
3. a JSONL stream scanned by :func:`scan_stream` (what ``kairo-guard scan`` runs) at a
   tenant fine-tune sink (its tenant's agreement active; a real codec and the default
   policy) or at a shared sink with a real guard's checks: its fingerprint net (which
   has indexed some of ``acme``'s content), its index watermark and a shard of operator
   data it vetted; the seeds hold lines genuinely sealed or vetted for them.

Invariants:

- the reader yields exactly the input's lines, in order, each as its exact bytes or,
  over ``max_bytes``, as an ``input.too-large`` error carrying its size and digest,
  however the stream splits its reads; nothing escapes it (no exception);
- ``parse_line`` returns the value the standard library reads from a valid line, and
  an error with a documented rule (and the line's digest) for every other one; it never
  raises; nesting past 1024 levels is ``input.too-deep``, not a crash or a hang;
- a scan accounts for every line that is not blank: it is allowed or reported as a
  violation (none lost silently), its totals add up, and it writes exactly the allowed
  lines, in order, each the canonical form of its input line;
- **no allow**: every line a scan passes carries a genuine seal whose digest is the
  line's content: at the fine-tune sink, of its tenant's customer content, unexpired; at
  the shared sink, of a record of the vetted shard (and ``acme``'s content, relabeled
  or not, never passes there).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from fuzz.harness import (
    NOW,
    Finding,
    Reader,
    key_ring,
    never_raises,
    require,
    scratch_dir,
    signer_keys,
)
from kairo_guard.cli.records import scan_stream
from kairo_guard.core.content import content_digest, sealed_line
from kairo_guard.core.jsonl import BadLine, Line, iter_lines, iter_raw_lines, parse_line
from kairo_guard.core.policy import Policy
from kairo_guard.core.report import CheckReport
from kairo_guard.core.seal import Label, SealCodec
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import SEAL_FIELD, DataClass, Mode, SinkKind
from kairo_guard.enforce.check import SinkCheck
from kairo_guard.enforce.check_context import CheckContext
from kairo_guard.guard import Guard

TARGET = "jsonl"
RULES = frozenset(
    {"input.invalid-utf8", "input.too-deep", "input.malformed-json", "input.inexact-number"}
)
MAX_DEPTH = 1024
CONTENTS: tuple[dict[str, Any], ...] = (
    {"text": "hello"},
    {"text": "h\u00e9llo \u2603", "n": 1.5, "tags": ["a", None, True]},
    {},
    {"nested": {"_kairo": "inner seal fields are content", "k": [1, 2, {"x": -0.0}]}},
    {"big": 18446744073709551615, "neg": -9223372036854775808},
)
ACME_TEXT = (
    "Quarterly revenue for the Northwind account grew eleven percent after the pricing "
    "change; the renewal call with their procurement lead is set for the second week."
)
OPERATOR = tuple(
    {"text": f"Public documentation page {i}: how to configure the exporter, step {i}.", "i": i}
    for i in range(4)
)


class _Discard:
    """Audit entries go nowhere: the audit log is not what is fuzzed here."""

    def append(self, entry: object) -> None:
        return None


@dataclass(frozen=True)
class Genuine:
    """What a genuine seal of the seeds vouches for."""

    tenant: str | None
    data_class: DataClass
    digest: str
    expired: bool


@dataclass(frozen=True)
class World:
    """The real codec, policy and sinks a scan runs with, and the genuine seals."""

    ctx: CheckContext
    """Of the fine-tune sink: the harness's codec and the default policy."""
    shared_ctx: CheckContext
    """Of the shared sink: a real guard's (its fingerprint net, vetted shards, index)."""
    fine_tune: Sink
    shared: Sink
    genuine: dict[str, Genuine]
    lines: tuple[bytes, ...]
    """Genuinely sealed lines (the seeds' material)."""
    laundered: bytes
    """Customer content of ``acme`` (indexed), unlabeled: the net's to refuse."""


@functools.cache
def world() -> World:
    """Build the world once per process."""
    ring = key_ring()
    codecs = [SealCodec(ring), SealCodec(key_ring("k0"))]
    genuine: dict[str, Genuine] = {}
    lines = []
    variants = [
        ("acme", DataClass.CUSTOMER_CONTENT, None),
        ("acme", DataClass.CUSTOMER_CONTENT, NOW - 1),  # expired
        ("acme", DataClass.USAGE_TELEMETRY, None),
        ("globex", DataClass.CUSTOMER_CONTENT, None),
    ]
    for i, content in enumerate(CONTENTS):
        for j, (tenant, cls, expires) in enumerate(variants):
            digest = content_digest(content)
            label = Label.create(
                tenant=tenant,
                data_class=cls,
                source="upload",
                created_at=NOW - 86_400,
                expires_at=expires,
                digest=digest,
            )
            seal = codecs[(i + j) % 2].seal(label)
            genuine[seal] = Genuine(tenant, cls, digest, expires is not None and expires <= NOW)
            lines.append(sealed_line(content, seal).rstrip(b"\n"))
    ctx = CheckContext(
        codec=codecs[0],
        policy=Policy(),
        audit=_Discard(),
        pseudonym=ring.pseudonym,
        agreement_active=lambda tenant, _now: tenant == "acme",
        clock=lambda: NOW,
        max_violations=1 << 30,
    )
    guard = Guard(home=scratch_dir(TARGET), key=ring, env={}, pii_gate=False,
                  signer=signer_keys(), clock=lambda: float(NOW))  # fmt: skip
    atexit.register(guard.close)
    guard.index_content("acme", {"text": ACME_TEXT})
    vetted = guard.vetting.vet(list(OPERATOR), source="docs")
    for content, outcome in zip(OPERATOR, vetted, strict=True):
        if not isinstance(outcome, str):
            raise Finding(f"operator data was refused: {outcome!r}")
        genuine[outcome] = Genuine(None, DataClass.OPERATOR_PUBLIC, content_digest(content), False)
        lines.append(sealed_line(content, outcome).rstrip(b"\n"))
    # the guard's own checks, but not its audit log: a million checks would fill it
    shared_ctx = dataclasses.replace(guard.checks.context, audit=_Discard(), telemetry=None)
    fine_tune = Sink("fuzz-fine-tune", SinkKind.TENANT_FINE_TUNE, "acme", Mode.FILTER)
    shared = Sink("fuzz-shared", SinkKind.SHARED_TRAINING, None, Mode.FILTER)
    laundered = orjson.dumps({"text": ACME_TEXT})
    return World(ctx, shared_ctx, fine_tune, shared, genuine, tuple(lines), laundered)


def test_one_input(data: bytes) -> None:
    """Check the JSONL invariants on one input (see the module docstring)."""
    reader = Reader(data)
    mode = reader.byte() % 4
    if mode == 0:
        check_reader(reader)
    elif mode == 1:
        line = reader.rest()
        check_parse_line(line, exact=True)
        check_parse_line(line, exact=False)
    elif mode == 2:
        check_nesting(reader)
    else:
        sink = reader.choice((world().fine_tune, world().shared))
        max_bytes = reader.choice((1 << 20, 64, 256, 1024))
        check_scan(reader.rest(), sink, max_bytes)


# -- the reader ------------------------------------------------------------------------


class _Trickle(io.BytesIO):
    """A stream whose reads return fewer bytes than asked (as pipes and sockets do)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        super().__init__(data)
        self._sizes = sizes
        self._reads = 0

    def read(self, size: int | None = -1, /) -> bytes:
        limit = self._sizes[self._reads % len(self._sizes)]
        self._reads += 1
        return super().read(limit if size is None or size < 0 else min(size, limit))


def expected_lines(data: bytes, max_bytes: int) -> list[bytes | tuple[int, str]]:
    """The reader's specification: every line without its newline (a last one without
    newline too), or ``(size, digest)`` for one over ``max_bytes``."""
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    return [(len(p), hashlib.sha256(p).hexdigest()) if len(p) > max_bytes else p for p in pieces]


def _as_expected(item: bytes | BadLine, max_bytes: int) -> bytes | tuple[int, str]:
    if isinstance(item, bytes):
        return item
    require(item.rule == "input.too-large", f"reader rule {item.rule!r}")
    size = re.match(r"record of (\d+) bytes", item.reason)
    if size is None or f"over the {max_bytes}-byte limit" not in item.reason:
        raise Finding(f"reader reason {item.reason!r}")
    return int(size.group(1)), item.digest


def _read_all(stream: io.BytesIO, max_bytes: int) -> list[bytes | BadLine]:
    return list(iter_raw_lines(stream, max_bytes))


def check_reader(reader: Reader) -> None:
    """The reader yields exactly the expected lines, however reads are split."""
    max_bytes = reader.pick((1, 8, 64, 1 << 20), lambda: 1 + reader.number(2))
    sizes = [1 + reader.byte() for _ in range(1 + reader.byte() % 4)]
    data = reader.rest()
    want = expected_lines(data, max_bytes)
    for stream in (io.BytesIO(data), _Trickle(data, sizes)):
        got = never_raises(functools.partial(_read_all, stream, max_bytes), "iter_raw_lines")
        require([_as_expected(g, max_bytes) for g in got] == want, "reader lines differ")
    numbered = never_raises(lambda: list(iter_lines(io.BytesIO(data), max_bytes)), "iter_lines")
    expected: list[Line | tuple[int, BadLine]] = []
    for number, (line, item) in enumerate(zip(want, got, strict=True), start=1):
        if isinstance(item, BadLine):
            expected.append((number, item))
        elif isinstance(line, bytes) and line.strip():
            expected.append(Line(number, line))
    require(numbered == expected, "iter_lines differs")


# -- one line --------------------------------------------------------------------------


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")


def _depth(raw: bytes) -> int:
    """The deepest nesting of brackets outside strings (an open string runs to the end)."""
    steps = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS).translate(_BRACKETS)
    return max(0, max(itertools.accumulate(memoryview(steps).cast("b")), default=0))


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _standard(raw: bytes) -> tuple[bool, object]:
    """``(True, value)`` if the standard library reads ``raw`` as JSON this reader must
    accept too (strict UTF-8, no NaN or infinity, no lone surrogate), else ``(False, None)``."""
    if _depth(raw) > 900:  # past the standard library's recursion
        return False, None
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None
    # orjson refuses a lone surrogate and a number too large for a double, as it may
    return not _has_lone_surrogate_or_infinity(value), value


def _walk(value: object) -> list[object]:
    """Every value inside ``value`` (keys included), itself first."""
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        found.append(item)
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _has_lone_surrogate_or_infinity(value: object) -> bool:
    return any(
        (isinstance(v, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in v))
        or (isinstance(v, float) and v in (float("inf"), float("-inf")))
        for v in _walk(value)
    )


def same(a: object, b: object) -> bool:
    """Equal values of equal types, all the way down (``1 == 1.0 == True`` is not enough)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, dict) and isinstance(y, dict):
            if list(x) != list(y):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif str(x) != str(y) if isinstance(x, float) else x != y:  # -0.0 is not 0.0
            return False
    return True


def check_parse_line(raw: bytes, *, exact: bool) -> object:
    """``parse_line`` reads what the standard library reads, and explains the rest."""
    found = never_raises(lambda: parse_line(raw, exact_numbers=exact), "parse_line")
    valid, value = _standard(raw)
    if isinstance(found, BadLine):
        require(found.rule in RULES, f"undocumented rule {found.rule!r}")
        require(found.digest == hashlib.sha256(raw).hexdigest(), "a bad line's digest")
        if found.rule == "input.invalid-utf8":
            require(_not_utf8(raw), "valid UTF-8 reported invalid")
        if found.rule == "input.too-deep":
            require(_depth(raw) > MAX_DEPTH, "a shallow line reported too deep")
        if found.rule == "input.inexact-number":
            require(exact, "inexact-number without exact_numbers")
        else:
            require(not valid, f"a valid line refused ({found.rule}): {raw[:80]!r}")
        return found
    require(not _not_utf8(raw), "a line that is not UTF-8 parsed")
    if valid and (exact or not _has_big_int(value)):
        require(same(found, value), f"parse_line read another value from {raw[:80]!r}")
    return found


def _has_big_int(value: object) -> bool:
    """An integer past 64 bits (orjson reads it as a float unless exact numbers)."""
    return any(
        isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64
        for v in _walk(value)
    )


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def check_nesting(reader: Reader) -> None:
    """Hostile nesting is refused with ``input.too-deep``, by the parser and the scan."""
    depth = reader.number(2) % 4096
    opener, closer = reader.choice(((b"[", b"]"), (b'{"a":', b"}"), (b'[{"b":', b"}]")))
    inner = reader.choice((b"1", b"[]", b'"x"', b"{}"))
    per_level = 2 if opener.startswith(b"[{") else 1
    line = opener * depth + inner + closer * depth
    found = check_parse_line(line, exact=True)
    too_deep = depth * per_level + (inner in (b"[]", b"{}")) > MAX_DEPTH
    if too_deep:
        require(
            isinstance(found, BadLine) and found.rule == "input.too-deep",
            f"nesting of {depth} not refused as too deep: {found!r:.80}",
        )
    else:
        require(not isinstance(found, BadLine), f"nesting of {depth} refused")
    report = check_scan(line + b"\n" + line, world().fine_tune, 1 << 20)
    if too_deep and report is not None:
        require(report.by_rule.get("input.too-deep") == 2, "scan: too deep not reported")


# -- the scan --------------------------------------------------------------------------


def _canonical(raw: bytes) -> bytes | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict or not isinstance(value.get(SEAL_FIELD), str):
        return None
    seal = value.pop(SEAL_FIELD)
    try:
        return sealed_line(value, seal).rstrip(b"\n")
    except Exception:  # noqa: BLE001 - content without a canonical form: none
        return None


def check_scan(body: bytes, sink: Sink, max_bytes: int) -> CheckReport | None:
    """Every line is allowed or reported; what passes is genuine and canonical."""
    w = world()
    run = SinkCheck(w.ctx if sink.tenant else w.shared_ctx, sink, Mode.FILTER, None)
    out = io.BytesIO()
    lines = expected_lines(body, max_bytes)
    try:
        report = scan_stream(run, io.BytesIO(body), out, max_bytes)
    except Exception as exc:
        raise Finding(f"scan_stream raised {type(exc).__name__}: {exc!r}") from exc
    records = [i for i, line in enumerate(lines) if not isinstance(line, bytes) or line.strip()]
    require(report.total == len(records), f"scan counted {report.total} of {len(records)} records")
    require(report.allowed + report.blocked == report.total, "allowed + blocked != total")
    refused = [v.index for v in report.violations]
    require(len(refused) == report.blocked == len(set(refused)), "violations do not add up")
    require(set(refused) <= set(records), "a violation names a line that is not a record")
    for i, line in enumerate(lines):
        if not isinstance(line, bytes):
            require(i in refused, f"over-long line {i} not reported")
    passed = [i for i in records if i not in set(refused)]
    written = out.getvalue().split(b"\n")
    require(written.pop() == b"", "output does not end with a newline")
    require(len(written) == len(passed), f"wrote {len(written)} lines, allowed {len(passed)}")
    for i, line_out in zip(passed, written, strict=True):
        line_in = lines[i]
        require(
            isinstance(line_in, bytes) and _canonical(line_in) == line_out,
            f"line {i} written as {line_out[:80]!r}, not its canonical form",
        )
        value = orjson.loads(line_out)
        seal = value.pop(SEAL_FIELD)
        known = w.genuine.get(seal)
        if known is None:
            raise Finding(f"line {i} passed with a seal not genuinely made: {seal!r}")
        require(known.digest == content_digest(value), f"line {i} passed with another's seal")
        entitled = (
            known.data_class is DataClass.OPERATOR_PUBLIC
            if sink.tenant is None
            else known.tenant == sink.tenant and known.data_class is DataClass.CUSTOMER_CONTENT
        )
        require(
            entitled and not known.expired, f"line {i} passed with a seal not entitled: {known}"
        )
    return report


def seed_inputs() -> dict[str, bytes]:
    """Named seeds: genuine sealed lines (scanned, split oddly), odd and bad lines."""
    w = world()
    found: dict[str, bytes] = {}
    genuine = b"\n".join(w.lines) + b"\n"
    found["scan-genuine-fine-tune"] = b"\x03\x00\x00" + genuine
    found["scan-genuine-shared"] = b"\x03\x01\x00" + genuine
    found["scan-genuine-small-limit"] = b"\x03\x00\x01" + genuine
    first = w.lines[0]
    reordered = orjson.dumps({SEAL_FIELD: orjson.loads(first)[SEAL_FIELD], **orjson.loads(first)})
    duplicate = first[:-1] + b',"text":"other"}'
    found["scan-shared-laundered"] = b"\x03\x01\x00" + b"\n".join(
        [
            *w.lines[-4:],
            w.laundered,
            w.laundered[:-1] + b',"_kairo":"' + w.lines[-1][-103:-2] + b'"}',
        ]
    )
    found["scan-mixed"] = b"\x03\x00\x00" + b"\n".join(
        [
            first,
            b"",
            b"   ",
            reordered,
            duplicate,
            b'{"text":"hello"}',
            b"[1,2]",
            b"not json",
            b"\xff\xfe",
            b'{"_kairo":5,"text":"hello"}',
            first.replace(b"hello", b"hellp"),
            b'{"a":' * 1100 + b"1" + b"}" * 1100,
            first + b"\r",
            b"\t" + first,
        ]
    )
    found["reader-trickle"] = b"\x00\x02\x03\x01\x02\x05" + genuine[:600] + b"\n\n" + b"x" * 70
    found["reader-tiny-limit"] = b"\x00\x01\x00\x01a\nbb\n\nccccccccc\nd"
    found["reader-no-newline"] = b"\x00\x04\x00\x01\x00\x10" + b"y" * 300
    for i, line in enumerate(
        (
            first,
            b'{"n":18446744073709551616}',
            b"[1e400]",
            b'"\\ud800"',
            b'{"a":1,"a":2}',
            b"\xef\xbb\xbf{}",
            b"-0.0",
            b'"\\u0000"',
        )
    ):
        found[f"line-{i}"] = b"\x01" + line
    found["nesting-1024"] = b"\x02\x04\x00\x00\x00"
    found["nesting-1025"] = b"\x02\x04\x01\x00\x00"
    found["nesting-objects-deep"] = b"\x02\x0f\xff\x01\x02"
    return found
