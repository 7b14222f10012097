"""Provenance labels and their seals.

A seal is ``kg1.<key_id>.<payload>.<tag>``, readable by an auditor and cheap to parse::

    kg1.k1.3d82...e249~acme~customer_content~1700000000~1707776000~upload.dQs6Vth...

``payload`` is ``digest~tenant~class~created_at~expires_at~source`` (tenant and
expires_at empty when absent, source percent-encoded so the seal holds only URL
unreserved characters and ``%``); ``tag`` is base64url (unpadded) of HMAC-SHA256 over
everything before the last dot, under the seal subkey of ``key_id``. Parsing is strict
and bounded: a seal that is longer than :data:`MAX_SEAL_LENGTH`, not ASCII, of another
version, signed by an unknown key, whose tag is not byte-for-byte the expected one, or
whose payload has the wrong shape raises :class:`~kairo_guard.core.exceptions.SealError` and
nothing else. The payload is read only after its tag verifies.

An HMAC seal carries only *restricting* labels (customer content, usage telemetry):
every process that verifies it holds its key, so a permitting label under it would be
forgeable by any of them. Permitting labels are ``kp1`` seals of vetted shards, signed
with Ed25519 by the roles that vet (:mod:`kairo_guard.core.shard`); the codec opens them
through the shard opener it is given (:attr:`SealCodec.shards`) and refuses a ``kg1``
seal that names a permitting class.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import NamedTuple, Protocol
from urllib.parse import quote, unquote

from kairo_guard.core.exceptions import SealError
from kairo_guard.core.keys import PURPOSE_SEAL, KeyRing
from kairo_guard.core.types import TENANT_PATTERN, DataClass, TenantId

SEAL_VERSION = "kg1"
MAX_SEAL_LENGTH = 2048
MAX_SOURCE_LENGTH = 256
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SOURCE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_CLASSES = {c.value: c for c in DataClass}
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_TAG_LENGTH = 43  # base64url of 32 bytes, unpadded
_SOURCE_SAFE = ""  # quote() keeps only A-Z a-z 0-9 - . _ ~ and escapes the rest
_MAX_CACHED_META = 4096
_MAX_TS = 2**40  # seconds; far past any real date, keeps payloads bounded
_SHARD_PREFIX = "kp1."
_PERMITTING_IN_HMAC = (
    "permitting labels are signed by the vetting role (kp1 shard seals), never under the "
    "shared HMAC key"
)


class Label(NamedTuple):
    """Where a piece of data came from and what it is, as carried by its seal.

    ``created_at`` and ``expires_at`` are Unix seconds; ``expires_at`` None means no
    retention limit. ``digest`` is the content digest (see :mod:`kairo_guard.core.content`).
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


class ShardSeals(Protocol):
    """Opens ``kp1`` seals, the records of vetted shards (:mod:`kairo_guard.enforce.shards`)."""

    def verify(self, seal: str) -> tuple[Label, str]:
        """Return the shard's label (shared by its records, digest empty) and the
        record's digest, once the shard verifies and the digest is one of its records.

        Raises:
            SealError: as :meth:`SealCodec.verify`.
        """
        ...


class SealCodec:
    """Signs restricting labels into seals and opens seals into verified labels.

    Args:
        ring: the HMAC keys of restricting seals.
        shards: opens ``kp1`` seals (permitting labels of vetted shards); None: they are
            refused (``unknown-key``) until one is set on :attr:`shards`.
    """

    def __init__(self, ring: KeyRing, shards: ShardSeals | None = None) -> None:
        self._ring = ring
        self.shards = shards
        """Opens ``kp1`` seals (set by the assembly once the store is open)."""
        # HMAC with the key's inner and outer states precomputed: half the cost of
        # hmac.digest per seal, which matters when a scan opens 100,000 seals a second.
        self._macs = {kid: _Mac(key) for kid, key in ring.subkeys(PURPOSE_SEAL).items()}
        # Verified payloads differ mostly in their digest: the rest (tenant, class,
        # times, source) repeats across a batch, so its parse is cached.
        self._meta: dict[str, dict[str, Label]] = {kid: {} for kid in self._macs}

    def seal(self, label: Label) -> str:
        """Return the seal of ``label``, signed with the ring's signing key.

        Raises:
            ValueError: if the label is invalid, or of a permitting class.
        """
        problem = _label_problem(label)
        if problem:
            raise ValueError(problem)
        if not label.data_class.restricts:
            raise ValueError(_PERMITTING_IN_HMAC)
        kid = self._ring.signing_key_id
        expires = "" if label.expires_at is None else str(label.expires_at)
        payload = (
            f"{label.digest}~{label.tenant or ''}~{label.data_class.value}~{label.created_at}"
            f"~{expires}~{quote(label.source, safe=_SOURCE_SAFE)}"
        )
        signed = f"{SEAL_VERSION}.{kid}.{payload}"
        return f"{signed}.{self._macs[kid].tag(signed)}"

    def sealer_for(
        self, *, tenant: TenantId | None, data_class: DataClass, source: str
    ) -> Callable[[str, int, int | None], str]:
        """Return ``seal(digest, created_at, expires_at)`` for labels whose tenant, class
        and source are fixed: those are validated and encoded once, the rest per call,
        and each seal is what :meth:`seal` makes of the same label (ingestion seals a
        body per request this way).

        Raises:
            ValueError: if the fixed fields are invalid (the returned function raises it
                for an invalid digest or times).
        """
        Label.create(
            tenant=tenant,
            data_class=data_class,
            source=source,
            created_at=0,
            expires_at=None,
            digest="0" * 64,
        )  # raises for an invalid tenant, class or source
        if not DataClass(data_class).restricts:
            raise ValueError(_PERMITTING_IN_HMAC)
        head, middle, tail, _ = self.seal_parts(tenant=tenant, data_class=data_class, source=source)
        tag = self._macs[self._ring.signing_key_id].tag

        def seal(digest: str, created_at: int, expires_at: int | None) -> str:
            if (
                _DIGEST.fullmatch(digest) is None
                or type(created_at) is not int
                or not 0 <= created_at < _MAX_TS
                or not (
                    expires_at is None
                    or (type(expires_at) is int and created_at < expires_at < _MAX_TS)
                )
            ):
                raise ValueError("invalid digest or times for a seal")
            expires = "" if expires_at is None else str(expires_at)
            signed = f"{head}{digest}{middle}{created_at}~{expires}{tail}"
            return f"{signed}.{tag(signed)}"

        return seal

    def seal_parts(
        self, *, tenant: TenantId | None, data_class: DataClass, source: str
    ) -> tuple[str, str, str, bytes]:
        """``(head, middle, tail, block)`` of the seals :meth:`sealer_for` makes, for a
        signer outside Python (the native spool writer): a seal is ``signed + "." + tag``
        with ``signed = head + digest + middle + f"{created}~{expires}" + tail`` (expires
        empty for none) and ``tag`` the unpadded base64url HMAC-SHA256 of ``signed``
        under the key whose 64-byte block (RFC 2104's key padded with zeros) is
        ``block``. The fields are not validated here (:meth:`sealer_for` does)."""
        kid = self._ring.signing_key_id
        head = f"{SEAL_VERSION}.{kid}."
        middle = f"~{tenant or ''}~{DataClass(data_class).value}~"
        tail = f"~{quote(source, safe=_SOURCE_SAFE)}"
        return head, middle, tail, self._macs[kid].block

    def open(self, seal: object) -> Label:
        """Verify ``seal`` and return its label (with ``key_id`` filled in: the HMAC key's,
        or for a shard's record the Ed25519 key that signed its shard).

        Expiry is not checked here: sinks decide on it.

        Raises:
            SealError: ``code`` is one of ``malformed``, ``unknown-key``, ``bad-tag``,
                ``bad-payload``.
        """
        meta, digest = self.verify(seal)
        return meta._replace(digest=digest)

    def verify(self, seal: object) -> tuple[Label, str]:
        """Verify ``seal``; return its label *without* digest (shared, cached) and the digest.

        The hot path of sink checks: labels that differ only in their digest are one
        cached object, so callers can key further caches on it.

        Raises:
            SealError: as :meth:`open`.
        """
        if type(seal) is not str or len(seal) > MAX_SEAL_LENGTH or not seal.isascii():
            raise SealError(
                f"a seal is an ASCII string of at most {MAX_SEAL_LENGTH} characters",
                code="malformed",
            )
        if seal.startswith(_SHARD_PREFIX):
            if self.shards is None:
                raise SealError("this guard cannot open shard seals", code="unknown-key")
            return self.shards.verify(seal)
        head, _, tag = seal.rpartition(".")
        parts = head.split(".", 2)
        if len(parts) != 3 or parts[0] != SEAL_VERSION or len(tag) != _TAG_LENGTH:
            raise SealError("not a kg1 seal (want kg1.<key id>.<payload>.<tag>)", code="malformed")
        kid = parts[1]
        mac = self._macs.get(kid)
        if mac is None:
            raise SealError(f"seal signed by unknown key id {kid[:32]!r}", code="unknown-key")
        # HMAC inlined (this is the hot path of every scan): see _Mac.tag.
        inner = mac.inner.copy()
        inner.update(head.encode("ascii"))
        outer = mac.outer.copy()
        outer.update(inner.digest())
        expected = binascii.b2a_base64(outer.digest(), newline=False).translate(_TO_URLSAFE)
        if not hmac.compare_digest(expected[:-1], tag.encode("ascii")):
            raise SealError("seal tag does not verify (forged or altered)", code="bad-tag")
        payload = parts[2]
        cache = self._meta[kid]
        rest = payload[65:]
        meta = cache.get(rest)
        if meta is None or payload[64:65] != "~":
            tenant, data_class, source, created, expires = _decode_meta(payload)
            meta = Label(tenant, data_class, source, created, expires, "", kid)
            if len(cache) >= _MAX_CACHED_META:
                cache.clear()
            cache[rest] = meta
        return meta, payload[:64]


class _Mac:
    """HMAC-SHA256 (RFC 2104) with precomputed pad states; tags in base64url."""

    __slots__ = ("block", "inner", "outer")

    def __init__(self, key: bytes) -> None:
        self.block = block = (
            key.ljust(64, b"\0")
            if len(key) <= 64
            else hashlib.sha256(key).digest().ljust(64, b"\0")
        )
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def tag(self, message: str) -> str:
        inner = self.inner.copy()
        inner.update(message.encode("ascii"))
        outer = self.outer.copy()
        outer.update(inner.digest())
        return (
            binascii.b2a_base64(outer.digest(), newline=False)
            .translate(_TO_URLSAFE)[:-1]
            .decode("ascii")
        )


def _decode_meta(payload: str) -> tuple[str | None, DataClass, str, int, int | None]:
    """Parse a verified payload's fields other than the digest.

    The fields were validated when the seal was made (the tag proves it); the shape
    checks here guard against a buggy or compromised signer.

    Raises:
        SealError: with code ``bad-payload``.
    """
    fields = payload.split("~", 5)
    if len(fields) != 6:
        raise SealError("seal payload has the wrong number of fields", code="bad-payload")
    digest, tenant, cls, created, expires, source = fields
    data_class = _CLASSES.get(cls)
    if data_class is None:
        raise SealError(f"seal names unknown data class {cls[:40]!r}", code="bad-payload")
    if not data_class.restricts:
        raise SealError(f"a kg1 seal of {data_class}: {_PERMITTING_IN_HMAC}", code="bad-payload")
    if not (
        _DIGEST.fullmatch(digest)
        and created.isdigit()
        and (not expires or expires.isdigit())
        and len(created) <= 13
        and len(expires) <= 13
    ):
        raise SealError("seal payload fields are malformed", code="bad-payload")
    return (
        tenant or None,
        data_class,
        unquote(source) if "%" in source else source,
        int(created),
        int(expires) if expires else None,
    )
