"""Vetted shards: permitting labels signed once for many records.

Operator data and the aggregator's output are vetted (the PII policy of their class,
the fingerprint net, the customer identifier index) in batches, and each batch becomes
a **shard**: its records' content digests under a Merkle root, in a manifest signed
with Ed25519 by the vetting or aggregating role (:mod:`kairo_guard.core.signing`). The
manifest says what was vetted and against what::

    {"class": "operator_public", "source": "docs", "created_at": 1764979200,
     "expires_at": null, "count": 10000, "root": "<Merkle root, hex>",
     "fingerprints": "<sha256 of the shard's fingerprint table, hex>",
     "watermark": 81234, "policy": "<the vetting policy's version, hex>",
     "key_id": "s1", "v": 1}

``watermark`` is the fingerprint index's position when the shard was vetted: a sink
needs to look only at what was indexed after it. ``policy`` names the settings the
records were vetted under: a sink whose policy differs checks them again in full.

A record of a shard carries the seal ``kp1.<shard id>.<content digest>``, where the
shard id is the first 16 bytes (hex) of SHA-256 of the manifest and its signature. A
sink verifies a shard once (signature, then the Merkle root over the digests the store
keeps for it), and then a record only by its digest's membership. The Merkle tree is
RFC 6962's (leaves and nodes hashed with distinct prefixes, so no digest list can pose
as another), which also lets a single record be proved a member later without its
shard. This module does no I/O: the store keeps shards, the sink side loads them
(:mod:`kairo_guard.enforce.shards`).
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

import orjson

from kairo_guard.core.exceptions import SealError
from kairo_guard.core.seal import Label
from kairo_guard.core.signing import SignerKeys, VerifyKeys
from kairo_guard.core.types import KEY_ID_PATTERN, DataClass

try:
    import kairo_guard.core._merkle as native_merkle  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - built at install; the Python tree hashes the same
    native_merkle = None

SHARD_SEAL_VERSION = "kp1"
MANIFEST_VERSION = 1
SHARD_SEAL_LENGTH = 4 + 32 + 1 + 64
_HEX = re.compile(r"[0-9a-f]{64}")
_SEAL = re.compile(r"kp1\.([0-9a-f]{32})\.([0-9a-f]{64})")
_DOMAIN = b"kairo-guard/shard-manifest/v1\n"
_PERMITTING = frozenset({DataClass.OPERATOR_PUBLIC, DataClass.ANONYMIZED_TELEMETRY})
_EMPTY_ROOT = hashlib.sha256(b"").digest()
_FIELDS = frozenset(
    {"v", "class", "source", "created_at", "expires_at", "count", "root", "fingerprints",
     "watermark", "policy", "key_id"}
)  # fmt: skip


class ShardManifest(NamedTuple):
    """What a shard's signer vouches for (see the module docstring)."""

    data_class: DataClass
    source: str
    created_at: int
    expires_at: int | None
    records: int
    root: str
    fingerprints: str
    watermark: int
    policy: str
    key_id: str

    def encode(self) -> bytes:
        """The canonical bytes that are signed (sorted keys, no spaces)."""
        doc = {
            "v": MANIFEST_VERSION,
            "class": self.data_class.value,
            "source": self.source,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "count": self.records,
            "root": self.root,
            "fingerprints": self.fingerprints,
            "watermark": self.watermark,
            "policy": self.policy,
            "key_id": self.key_id,
        }
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

    def label(self) -> Label:
        """The label every record of the shard carries (its digest left empty)."""
        return Label(None, self.data_class, self.source, self.created_at, self.expires_at, "",
                     self.key_id)  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> ShardManifest:
        """Parse and validate a manifest's canonical bytes.

        Raises:
            SealError: code ``bad-payload``, saying what is wrong.
        """
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SealError(f"shard manifest is not JSON: {exc}", code="bad-payload") from exc
        if not isinstance(doc, dict) or set(doc) != _FIELDS or doc["v"] != MANIFEST_VERSION:
            raise SealError("shard manifest has the wrong fields or version", code="bad-payload")
        try:
            manifest = cls(
                DataClass(doc["class"]),
                doc["source"],
                doc["created_at"],
                doc["expires_at"],
                doc["count"],
                doc["root"],
                doc["fingerprints"],
                doc["watermark"],
                doc["policy"],
                doc["key_id"],
            )
        except ValueError as exc:
            raise SealError(f"shard manifest: {exc}", code="bad-payload") from exc
        problem = manifest_problem(manifest)
        if problem:
            raise SealError(f"shard manifest: {problem}", code="bad-payload")
        if manifest.encode() != data:
            raise SealError("shard manifest is not in canonical form", code="bad-payload")
        return manifest


def manifest_problem(m: ShardManifest) -> str | None:
    """What is wrong with a manifest's fields, or None."""
    if m.data_class not in _PERMITTING:
        return f"{m.data_class} is not a permitting class"
    try:
        Label.create(tenant=None, data_class=m.data_class, source=m.source,
                     created_at=m.created_at, expires_at=m.expires_at, digest="0" * 64)  # fmt: skip
    except ValueError as exc:
        return str(exc)
    for name in ("records", "watermark"):
        value = getattr(m, name)
        if type(value) is not int or not 0 <= value < 2**62:
            return f"{name} must be a non-negative integer"
    for name in ("root", "fingerprints", "policy"):
        if not isinstance(getattr(m, name), str) or _HEX.fullmatch(getattr(m, name)) is None:
            return f"{name} must be 64 lowercase hex characters"
    if not isinstance(m.key_id, str) or KEY_ID_PATTERN.fullmatch(m.key_id) is None:
        return "key_id is not a key id"
    return None


def merkle_root(digests: bytes) -> str:
    """The RFC 6962 Merkle tree hash of ``digests`` (32-byte leaves, in order), hex:
    :func:`merkle_root_python`, computed in C where the extension is built.

    Raises:
        ValueError: ``digests`` is not a whole number of 32-byte digests.
    """
    if native_merkle is not None:
        return str(native_merkle.root(digests).hex())
    return merkle_root_python(digests)


def digest_index(digests: bytes) -> dict[str, int]:
    """``{hex of digest i: i}`` over 32-byte leaves (a repeated digest keeps its last
    number): how a sink finds a record of a shard by its content digest.

    Raises:
        ValueError: ``digests`` is not a whole number of 32-byte digests.
    """
    if native_merkle is not None:
        found: dict[str, int] = native_merkle.index(digests)
        return found
    if len(digests) % 32:
        raise ValueError("digests must be a concatenation of 32-byte digests")
    hexes = bytes(digests).hex()
    return {hexes[i : i + 64]: i // 64 for i in range(0, len(hexes), 64)}


def merkle_root_python(digests: bytes) -> str:
    """:func:`merkle_root` in Python: the specification the extension is held to.

    Raises:
        ValueError: ``digests`` is not a whole number of 32-byte digests.
    """
    if len(digests) % 32:
        raise ValueError("digests must be a concatenation of 32-byte digests")
    sha256 = hashlib.sha256
    level = [sha256(b"\0" + digests[i : i + 32]).digest() for i in range(0, len(digests), 32)]
    if not level:
        return _EMPTY_ROOT.hex()
    while len(level) > 1:  # pairs hashed, an odd last node carried up (= RFC 6962's split)
        paired = [sha256(b"\1" + level[i] + level[i + 1]).digest()
                  for i in range(0, len(level) - 1, 2)]  # fmt: skip
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()


def sign_manifest(manifest: ShardManifest, signer: SignerKeys) -> bytes:
    """Sign ``manifest`` (whose ``key_id`` must be the signer's); return the signature.

    Raises:
        ValueError: the manifest names another key, or its fields are invalid.
    """
    if manifest.key_id != signer.signing_key_id:
        raise ValueError("the manifest must name the signing key")
    problem = manifest_problem(manifest)
    if problem:
        raise ValueError(problem)
    return signer.sign(_DOMAIN + manifest.encode())[1]


def verify_manifest(data: bytes, signature: bytes, keys: VerifyKeys) -> ShardManifest:
    """Return the manifest of ``data`` if ``signature`` verifies under the key it names.

    Raises:
        SealError: ``unknown-key`` (a key this process does not trust), ``bad-tag``
            (the signature does not verify), ``bad-payload`` (a malformed manifest).
    """
    manifest = ShardManifest.decode(data)
    if manifest.key_id not in keys:
        raise SealError(f"shard signed by unknown key id {manifest.key_id!r}", code="unknown-key")
    if not keys.verify(manifest.key_id, signature, _DOMAIN + data):
        raise SealError("shard manifest signature does not verify", code="bad-tag")
    return manifest


def shard_id_of(manifest: bytes, signature: bytes) -> str:
    """A shard's id: 16 bytes of SHA-256 of its manifest's bytes and signature, hex.
    The signature is deterministic (Ed25519), so the id names both what was vouched
    for and who vouched: two signers of the same records make two shards."""
    return hashlib.sha256(manifest + b"." + signature).hexdigest()[:32]


def shard_seal(shard_id: str, digest: str) -> str:
    """The seal of a record of shard ``shard_id`` whose content digest is ``digest``."""
    return f"{SHARD_SEAL_VERSION}.{shard_id}.{digest}"


def parse_shard_seal(seal: str) -> tuple[str, str]:
    """Return ``(shard id, digest)`` of a ``kp1`` seal.

    Raises:
        SealError: code ``malformed``.
    """
    found = _SEAL.fullmatch(seal) if len(seal) == SHARD_SEAL_LENGTH else None
    if found is None:
        raise SealError("not a kp1 seal (want kp1.<shard id>.<digest>)", code="malformed")
    return found.group(1), found.group(2)
