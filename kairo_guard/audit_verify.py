"""The audit log's byte format, its signed head, and :func:`verify_audit`.

A log line is ``{"seq":N,"ts":T,"prev":"<64 hex>",...fields...,"hash":"<64 hex>"}\\n``
where ``hash`` is SHA-256 over the line's exact bytes without the ``hash`` member.
The member always comes last and has a fixed length, so the hashed body is recovered by
cutting a 75-byte suffix: nothing is ever re-serialised.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson

from kairo_guard.exceptions import AuditError

LOG_NAME = "audit.jsonl"
HEAD_NAME = "audit.head"
TORN_PREFIX = "audit.torn."
GENESIS = "0" * 64
"""The ``prev`` of entry 0."""
RESERVED_KEYS = frozenset({"seq", "ts", "prev", "hash"})
TORN_EVENT = "torn_tail_recovered"

_HASH_OPEN = b',"hash":"'
_SUFFIX_LEN = len(_HASH_OPEN) + 64 + 2
_HEX = b"0123456789abcdef"
_HEAD_KEYS = frozenset({"v", "count", "hash", "ts", "key_id", "mac"})


def split_line(line: bytes) -> tuple[bytes, str]:
    """Return the hashed body of ``line`` (no newline) and the hash it claims.

    Raises:
        ValueError: if the line does not end with a well-formed ``hash`` member.
    """
    claimed = line[-66:-2]
    if (
        len(line) < _SUFFIX_LEN + 2
        or line[-_SUFFIX_LEN : -_SUFFIX_LEN + len(_HASH_OPEN)] != _HASH_OPEN
        or line[-2:] != b'"}'
        or claimed.translate(None, _HEX)
    ):
        raise ValueError('it does not end with a well-formed "hash" member')
    return line[:-_SUFFIX_LEN] + b"}", claimed.decode("ascii")


def parse_entry(line: bytes) -> tuple[dict[str, object], str]:
    """Check one line's self-hash and return its members (without ``hash``) and hash.

    Raises:
        ValueError: in plain words, if the line is not an intact entry.
    """
    body, claimed = split_line(line)
    if hashlib.sha256(body).hexdigest() != claimed:
        raise ValueError("its hash does not match its content (entry edited?)")
    try:
        entry = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError("it is not valid JSON") from exc
    if not isinstance(entry, dict) or "hash" in entry:
        raise ValueError("it is not a JSON object with a single hash member")
    seq = entry.get("seq")
    if type(seq) is not int or seq < 0:
        raise ValueError("seq is not a non-negative integer")
    if type(entry.get("ts")) not in (int, float):
        raise ValueError("ts is not a number")
    return entry, claimed


@dataclass(frozen=True)
class SignedHead:
    """The parsed ``audit.head``: how many entries the key holder vouched for."""

    count: int
    hash: str
    ts: float
    key_id: str
    mac: str

    def canonical(self) -> bytes:
        """Return the bytes the MAC covers."""
        return _canonical(self.count, self.hash, self.ts, self.key_id)

    def mac_ok(self, key: bytes) -> bool:
        """Return True if ``mac`` is HMAC-SHA256 of :meth:`canonical` under ``key``."""
        expected = hmac.new(key, self.canonical(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.mac)


def _canonical(count: int, last_hash: str, ts: float, key_id: str) -> bytes:
    return orjson.dumps({"v": 1, "count": count, "hash": last_hash, "ts": ts, "key_id": key_id})


def encode_head(count: int, last_hash: str, ts: float, key_id: str, key: bytes) -> bytes:
    """Return the bytes of a head vouching for ``count`` entries ending in ``last_hash``."""
    mac = hmac.new(key, _canonical(count, last_hash, ts, key_id), hashlib.sha256).hexdigest()
    head = {"v": 1, "count": count, "hash": last_hash, "ts": ts, "key_id": key_id, "mac": mac}
    return orjson.dumps(head) + b"\n"


def _is_hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and not value.encode().translate(None, _HEX)


def decode_head(raw: bytes) -> SignedHead:
    """Parse the bytes of ``audit.head``.

    Raises:
        ValueError: if they are not a version-1 head with exactly the expected members.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError("audit.head is not valid JSON") from exc
    if not isinstance(obj, dict) or obj.keys() != _HEAD_KEYS or obj["v"] != 1:
        raise ValueError(f"audit.head is not a version-1 head with members {sorted(_HEAD_KEYS)}")
    count, ts, key_id = obj["count"], obj["ts"], obj["key_id"]
    if type(count) is not int or count < 0 or type(ts) not in (int, float):
        raise ValueError("audit.head: count or ts has the wrong type")
    if not isinstance(key_id, str) or not _is_hex64(obj["hash"]) or not _is_hex64(obj["mac"]):
        raise ValueError("audit.head: key_id, hash or mac is malformed")
    return SignedHead(count, obj["hash"], ts, key_id, obj["mac"])


@dataclass(frozen=True)
class AuditVerification:
    """What :func:`verify_audit` found.

    ``entries`` counts the intact, chained entries read before any problem;
    ``signed_entries`` those of them covered by a head whose MAC verified.
    ``first_bad_line`` is 1-based; ``problem`` says what is wrong in plain words.
    """

    ok: bool
    entries: int
    signed_entries: int
    first_bad_line: int | None
    problem: str | None
    warnings: tuple[str, ...]


@dataclass
class _Scan:
    """The state of one pass over the log."""

    count: int
    entries: int = 0
    last_hash: str = GENESIS
    hash_at_count: str | None = None
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)

    def feed(self, lineno: int, raw: bytes) -> bool:
        if not raw.endswith(b"\n"):
            self.problem = (
                f"line {lineno}: torn last line ({len(raw)} bytes, no newline): a writer "
                "crashed mid-write or the file was cut"
            )
            return False
        try:
            entry, claimed = parse_entry(raw[:-1])
        except ValueError as exc:
            self.problem = f"line {lineno}: not an intact audit entry: {exc}"
            return False
        if entry["seq"] != self.entries:
            self.problem = (
                f"line {lineno}: seq is {entry['seq']}, expected {self.entries} "
                "(entry deleted, inserted or reordered?)"
            )
            return False
        if entry.get("prev") != self.last_hash:
            self.problem = (
                f"line {lineno}: prev does not match the hash of line {lineno - 1} "
                "(entry deleted, inserted or reordered?)"
            )
            return False
        if entry.get("event") == TORN_EVENT:
            self.warnings.append(
                f"line {lineno}: the writer moved a torn tail of {entry.get('bytes')} bytes "
                f"(sha256 {entry.get('sha256')}) aside to {TORN_PREFIX}* and recovered"
            )
        self.entries += 1
        self.last_hash = claimed
        if self.entries == self.count:
            self.hash_at_count = claimed
        return True


def _lines(log: BinaryIO, size: int) -> Iterator[bytes]:
    """Yield the log's lines up to byte ``size`` (a snapshot), streaming."""
    done = 0
    for raw in log:
        if done + len(raw) > size:
            raw = raw[: size - done]
        if raw:
            yield raw
        done += len(raw)
        if done >= size:
            return


def _snapshot(directory: Path) -> tuple[BinaryIO | None, bytes | None, int]:
    """Open the log and read the head under a shared lock: a consistent pair."""
    try:
        log: BinaryIO | None = (directory / LOG_NAME).open("rb")
    except FileNotFoundError:
        log = None
    try:
        if log is not None:
            fcntl.flock(log.fileno(), fcntl.LOCK_SH)
        try:
            head = (directory / HEAD_NAME).read_bytes()
        except FileNotFoundError:
            head = None
        size = 0
        if log is not None:
            size = log.seek(0, 2)
            fcntl.flock(log.fileno(), fcntl.LOCK_UN)
            log.seek(0)
    except OSError:
        if log is not None:
            log.close()
        raise
    return log, head, size


def _check_head(
    raw: bytes | None, head_keys: Mapping[str, bytes], scan: _Scan
) -> tuple[int, str | None, int | None]:
    """Return (signed entries, problem, first bad line) for the head against the scan."""
    if raw is None:
        if scan.entries:
            return 0, f"audit.head is missing but the log holds {scan.entries} entries", None
        return 0, None, None
    try:
        head = decode_head(raw)
    except ValueError as exc:
        return 0, str(exc), None
    key = head_keys.get(head.key_id)
    if key is None:
        return 0, f"audit.head is signed with unknown key id {head.key_id!r}", None
    if not head.mac_ok(key):
        return 0, f"audit.head: mac does not verify with key {head.key_id!r} (forged?)", None
    if head.count > scan.entries:
        return (
            0,
            (
                f"audit.head signs {head.count} entries but the log holds {scan.entries} "
                "(tail truncated?)"
            ),
            scan.entries + 1,
        )
    if head.count == 0 and head.hash != GENESIS:
        return 0, "audit.head signs 0 entries but names a hash", None
    if head.count and head.hash != scan.hash_at_count:
        return (
            0,
            (f"line {head.count}: hash differs from the one in audit.head (entries rewritten?)"),
            head.count,
        )
    return head.count, None, None


def verify_audit(directory: Path, head_keys: Mapping[str, bytes]) -> AuditVerification:
    """Check every entry of the audit log in ``directory`` and its signed head.

    Streams the log (it may be gigabytes). Entries appended after the head was read are
    not checked; entries the head does not yet cover are a warning, not a failure.

    Args:
        directory: the audit directory holding ``audit.jsonl`` and ``audit.head``.
        head_keys: head MAC keys by key id.

    Returns:
        The outcome; ``ok`` is False at the first problem, which it names.

    Raises:
        AuditError: if the files exist but cannot be read.
    """
    try:
        log, head_raw, size = _snapshot(directory)
    except OSError as exc:
        raise AuditError(f"cannot read the audit log in {directory}: {exc}") from exc
    try:
        count = decode_head(head_raw).count if head_raw is not None else -1
    except ValueError:
        count = -1  # reported by _check_head
    scan = _Scan(count)
    bad_line: int | None = None
    if log is not None:
        with log:
            for lineno, raw in enumerate(_lines(log, size), start=1):
                if not scan.feed(lineno, raw):
                    bad_line = lineno
                    break
    signed, head_problem, head_bad_line = _check_head(head_raw, head_keys, scan)
    problem = scan.problem or head_problem
    if scan.problem is None:
        bad_line = head_bad_line
    warnings = scan.warnings
    if problem is None and scan.entries > signed:
        warnings.append(
            f"lines {signed + 1}-{scan.entries} ({scan.entries - signed} entries) are not yet "
            "covered by the signed head (written after its last update, e.g. a crash)"
        )
    return AuditVerification(
        ok=problem is None,
        entries=scan.entries,
        signed_entries=signed,
        first_bad_line=bad_line,
        problem=problem,
        warnings=tuple(warnings),
    )
