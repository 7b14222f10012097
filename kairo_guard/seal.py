"""Provenance labels and their seals.

A seal is ``kg1.<key_id>.<payload>.<tag>``: ``payload`` is base64url (no padding) of the
label's canonical JSON array, ``tag`` is base64url of HMAC-SHA256 over everything before
the last dot, under the seal subkey of ``key_id``. Parsing is strict and bounded: a seal
longer than :data:`MAX_SEAL_LENGTH`, with a wrong version, an unknown key, a tag that is
not byte-for-byte the expected one, or a payload of the wrong shape raises
:class:`~kairo_guard.exceptions.SealError` and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import NamedTuple

import orjson

from kairo_guard.exceptions import SealError
from kairo_guard.keys import PURPOSE_SEAL, KeyRing
from kairo_guard.types import TENANT_PATTERN, DataClass, TenantId

SEAL_VERSION = "kg1"
PAYLOAD_VERSION = 1
MAX_SEAL_LENGTH = 2048
MAX_SOURCE_LENGTH = 256
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SOURCE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_CLASSES = {c.value: c for c in DataClass}
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_MAX_TS = 2**40  # seconds; far past any real date, keeps payloads bounded


class Label(NamedTuple):
    """Where a piece of data came from and what it is, as carried by its seal.

    ``created_at`` and ``expires_at`` are Unix seconds; ``expires_at`` None means no
    retention limit. ``digest`` is the content digest (see :mod:`kairo_guard.content`).
    Build one with :meth:`create`, which validates; a seal is only ever made from a
    validated label, so a label opened from a verified seal is valid too.
    """

    tenant: TenantId | None
    data_class: DataClass
    source: str
    created_at: int
    expires_at: int | None
    digest: str
    key_id: str = ""

    @classmethod
    def create(
        cls,
        *,
        tenant: TenantId | None,
        data_class: DataClass,
        source: str,
        created_at: int,
        expires_at: int | None,
        digest: str,
    ) -> Label:
        """Return a validated label.

        Raises:
            ValueError: saying which field is wrong.
        """
        label = cls(tenant, DataClass(data_class), source, created_at, expires_at, digest)
        problem = _label_problem(label)
        if problem:
            raise ValueError(problem)
        return label

    def expired(self, now: float) -> bool:
        """True if the label's retention has run out at ``now`` (Unix seconds)."""
        return self.expires_at is not None and now >= self.expires_at


def _label_problem(label: Label) -> str | None:
    if not isinstance(label.data_class, DataClass):
        return f"unknown data class {label.data_class!r}"
    if label.data_class.tenant_bound:
        if not isinstance(label.tenant, str) or TENANT_PATTERN.fullmatch(label.tenant) is None:
            return f"{label.data_class} needs a valid tenant id, got {label.tenant!r}"
    elif label.tenant is not None:
        return f"{label.data_class} carries no tenant"
    if not isinstance(label.source, str) or len(label.source) > MAX_SOURCE_LENGTH:
        return f"source must be a string of at most {MAX_SOURCE_LENGTH} characters"
    if _SOURCE.fullmatch(label.source) is None:
        return "source must be printable ASCII without leading or trailing spaces"
    if type(label.created_at) is not int or not 0 <= label.created_at < _MAX_TS:
        return "created_at must be Unix seconds (int)"
    if label.expires_at is not None and (
        type(label.expires_at) is not int or not label.created_at < label.expires_at < _MAX_TS
    ):
        return "expires_at must be Unix seconds after created_at, or None"
    if not isinstance(label.digest, str) or _DIGEST.fullmatch(label.digest) is None:
        return "digest must be 64 lowercase hex characters"
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SealCodec:
    """Signs labels into seals and opens seals into verified labels."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        # HMAC with the key's inner and outer states precomputed: half the cost of
        # hmac.digest per seal, which matters when a scan opens 100,000 seals a second.
        self._macs = {kid: _Mac(key) for kid, key in ring.subkeys(PURPOSE_SEAL).items()}

    def seal(self, label: Label) -> str:
        """Return the seal of ``label``, signed with the ring's signing key."""
        problem = _label_problem(label)
        if problem:
            raise ValueError(problem)
        kid = self._ring.signing_key_id
        payload = orjson.dumps(
            [
                PAYLOAD_VERSION,
                label.tenant,
                label.data_class.value,
                label.source,
                label.created_at,
                label.expires_at,
                label.digest,
            ]
        )
        signed = f"{SEAL_VERSION}.{kid}.{_b64(payload)}"
        return f"{signed}.{self._macs[kid].tag(signed)}"

    def open(self, seal: object) -> Label:
        """Verify ``seal`` and return its label (with ``key_id`` filled in).

        Expiry is not checked here: sinks decide on it.

        Raises:
            SealError: ``code`` is one of ``malformed``, ``unknown-key``, ``bad-tag``,
                ``bad-payload``.
        """
        if not isinstance(seal, str):
            raise SealError(f"a seal is a string, not {type(seal).__name__}", code="malformed")
        if len(seal) > MAX_SEAL_LENGTH or not seal.isascii():
            raise SealError("seal is too long or not ASCII", code="malformed")
        parts = seal.split(".")
        if len(parts) != 4 or parts[0] != SEAL_VERSION:
            raise SealError("not a kg1 seal (want kg1.<key>.<payload>.<tag>)", code="malformed")
        _, kid, payload_b64, tag_b64 = parts
        mac = self._macs.get(kid)
        if mac is None:
            raise SealError(f"seal signed by unknown key id {kid[:32]!r}", code="unknown-key")
        if not hmac.compare_digest(mac.tag(seal[: len(seal) - len(tag_b64) - 1]), tag_b64):
            raise SealError("seal tag does not verify (forged or altered)", code="bad-tag")
        return _decode_payload(payload_b64, kid)


class _Mac:
    """HMAC-SHA256 (RFC 2104) with precomputed pad states; tags in base64url."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = (
            key.ljust(64, b"\0")
            if len(key) <= 64
            else hashlib.sha256(key).digest().ljust(64, b"\0")
        )
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def tag(self, message: str) -> str:
        inner = self._inner.copy()
        inner.update(message.encode("ascii"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return (
            binascii.b2a_base64(outer.digest(), newline=False)
            .translate(_TO_URLSAFE)[:-1]
            .decode("ascii")
        )


def _decode_payload(payload_b64: str, kid: str) -> Label:
    raw = payload_b64.encode("ascii")
    try:
        fields = orjson.loads(
            binascii.a2b_base64(
                raw.translate(_FROM_URLSAFE) + b"=" * (-len(raw) % 4), strict_mode=True
            )
        )
    except (binascii.Error, ValueError) as exc:
        raise SealError("seal payload does not decode", code="bad-payload") from exc
    if not isinstance(fields, list) or len(fields) != 7 or fields[0] != PAYLOAD_VERSION:
        raise SealError("seal payload has the wrong shape or version", code="bad-payload")
    _, tenant, cls, source, created, expires, digest = fields
    data_class = _CLASSES.get(cls) if isinstance(cls, str) else None
    if data_class is None:
        raise SealError(f"seal names unknown data class {str(cls)[:40]!r}", code="bad-payload")
    # The tag verified, so these fields were validated when the seal was made; the
    # type checks below guard against a compromised or buggy signer, cheaply.
    if not (
        (tenant is None or type(tenant) is str)
        and type(source) is str
        and type(created) is int
        and (expires is None or type(expires) is int)
        and type(digest) is str
        and len(digest) == 64
    ):
        raise SealError("seal payload fields have the wrong types", code="bad-payload")
    return Label(tenant, data_class, source, created, expires, digest, kid)
