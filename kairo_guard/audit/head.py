"""The audit log's signed head: how many entries the key holder vouched for, and the
last one's hash, HMAC-SHA256 signed (like Certificate Transparency's signed tree head)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import orjson

HEAD_NAME = "audit.head"
_HEX = b"0123456789abcdef"
_HEAD_KEYS = frozenset({"v", "count", "hash", "ts", "key_id", "mac"})


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
    if (
        not isinstance(obj, dict)
        or obj.keys() != _HEAD_KEYS
        or type(obj["v"]) is not int
        or obj["v"] != 1
    ):
        raise ValueError(f"audit.head is not a version-1 head with members {sorted(_HEAD_KEYS)}")
    count, ts, key_id = obj["count"], obj["ts"], obj["key_id"]
    if type(count) is not int or count < 0 or type(ts) not in (int, float):
        raise ValueError("audit.head: count or ts has the wrong type")
    if not isinstance(key_id, str) or not _is_hex64(obj["hash"]) or not _is_hex64(obj["mac"]):
        raise ValueError("audit.head: key_id, hash or mac is malformed")
    return SignedHead(count, obj["hash"], ts, key_id, obj["mac"])
