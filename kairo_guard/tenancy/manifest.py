"""Signed dataset manifests and the Merkle root that binds them to their records.

A tenant dataset is a directory holding ``records.jsonl`` (one sealed record a line,
see :func:`~kairo_guard.core.content.sealed_line`) and ``manifest.json``. The manifest names
the tenant, the record count, the Merkle root over the records' content digests *in
order*, the policy it was built under, the agreement that permitted it and when it was
made; ``signature`` is HMAC-SHA256 under the ``manifest`` subkey of ``key_id`` over the
canonical JSON of every other field. Any held key verifies (rotation); any edit, or a
record added, removed, changed or moved, breaks it.

The Merkle tree is RFC 6962's: leaf ``SHA-256(0x00 || digest)``, node
``SHA-256(0x01 || left || right)``, the left subtree the largest power of two; the root
of no records is ``SHA-256("")``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from kairo_guard.core.content import canonical_json
from kairo_guard.core.exceptions import DatasetError as DatasetError  # re-exported here
from kairo_guard.core.keys import PURPOSE_MANIFEST, KeyRing
from kairo_guard.core.policy import POLICY_VERSION, Policy
from kairo_guard.core.types import TENANT_PATTERN, TenantId

MANIFEST_FORMAT = "kg-dataset-1"
MANIFEST_FILE = "manifest.json"
RECORDS_FILE = "records.jsonl"
MAX_MANIFEST_BYTES = 64 * 1024
_LEAF, _NODE = b"\x00", b"\x01"
_sha256 = hashlib.sha256


class MerkleRoot:
    """Streaming RFC 6962 Merkle tree hash over 32-byte digests, in order."""

    __slots__ = ("_stack", "count")

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (size of subtree, its hash)
        self.count = 0

    def add(self, digest: bytes) -> None:
        """Append one record's raw (32-byte) content digest."""
        node = (1, _sha256(_LEAF + digest).digest())
        stack = self._stack
        while stack and stack[-1][0] == node[0]:
            size, left = stack.pop()
            node = (size * 2, _sha256(_NODE + left + node[1]).digest())
        stack.append(node)
        self.count += 1

    def hexdigest(self) -> str:
        """Return the root (hex) of the digests added so far."""
        if not self._stack:
            return _sha256(b"").hexdigest()
        right = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            right = _sha256(_NODE + left + right).digest()
        return right.hex()


def merkle_root(digests: Iterable[str]) -> str:
    """Return the Merkle root (hex) of hex content digests, in order."""
    tree = MerkleRoot()
    for digest in digests:
        tree.add(bytes.fromhex(digest))
    return tree.hexdigest()


def policy_fingerprint(policy: Policy) -> str:
    """Return a stable SHA-256 (hex) of what the policy decides: its rules' matchers.

    Reasons are wording, not behaviour, and are left out; rule order is the policy's
    own deterministic order.
    """
    rules = [
        {
            "id": r.id,
            "effect": r.effect.value,
            "classes": None if r.data_classes is None else sorted(r.data_classes),
            "kinds": None if r.sink_kinds is None else sorted(r.sink_kinds),
            "tenant": r.tenant.value,
            "when": [[flag.value, value] for flag, value in r.when],
            "sources": None if r.sources is None else list(r.sources),
            "priority": r.priority,
        }
        for r in policy.rules
    ]
    return _sha256(canonical_json(rules)).hexdigest()


@dataclass(frozen=True, slots=True)
class Manifest:
    """A dataset's signed manifest (see the module docstring)."""

    format: str
    dataset_id: str
    tenant: TenantId
    """The raw tenant id: the manifest is the tenant's own data, kept beside its records."""
    record_count: int
    merkle_root: str
    policy_version: str
    policy_fingerprint: str
    agreement_id: str
    created_at: int
    supersedes: str | None
    """The digest of the manifest this one replaces (after pruning), else None."""
    key_id: str
    signature: str

    def body(self) -> dict[str, Any]:
        """Return every field but the signature: what the signature covers."""
        doc = dataclasses.asdict(self)
        del doc["signature"]
        return doc

    def to_json(self) -> bytes:
        """Return the ``manifest.json`` document (sorted keys, indented, newline)."""
        return (
            orjson.dumps(
                dataclasses.asdict(self), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
            )
            + b"\n"
        )

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the whole manifest, signature included."""
        return _sha256(canonical_json(dataclasses.asdict(self))).hexdigest()


_FIELDS: Mapping[str, tuple[type, ...]] = {
    "format": (str,),
    "dataset_id": (str,),
    "tenant": (str,),
    "record_count": (int,),
    "merkle_root": (str,),
    "policy_version": (str,),
    "policy_fingerprint": (str,),
    "agreement_id": (str,),
    "created_at": (int,),
    "supersedes": (str, type(None)),
    "key_id": (str,),
    "signature": (str,),
}


def _signature(ring: KeyRing, key_id: str, body: Mapping[str, Any]) -> str:
    return hmac.digest(ring.subkey(PURPOSE_MANIFEST, key_id), canonical_json(body), "sha256").hex()


def sign_manifest(ring: KeyRing, **fields: Any) -> Manifest:
    """Return a manifest of ``fields`` (all but ``key_id``/``signature``) signed now.

    Raises:
        ValueError: for a missing or badly typed field.
    """
    body = {"format": MANIFEST_FORMAT, **fields, "key_id": ring.signing_key_id}
    manifest = _typed({**body, "signature": _signature(ring, ring.signing_key_id, body)})
    if manifest is None:
        raise ValueError("manifest fields are missing or of the wrong type")
    return manifest


def _typed(doc: object) -> Manifest | None:
    if not isinstance(doc, dict) or set(doc) != set(_FIELDS):
        return None
    for name, types in _FIELDS.items():
        value = doc[name]
        if type(value) not in types:  # exact types: a bool is not a count
            return None
    if doc["record_count"] < 0 or TENANT_PATTERN.fullmatch(doc["tenant"]) is None:
        return None
    return Manifest(**doc)


def parse_manifest(data: bytes) -> Manifest:
    """Parse a ``manifest.json`` document (shape only; see :func:`verify_manifest`).

    Raises:
        DatasetError: ``dataset.manifest-invalid`` for anything but a well-formed manifest.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise DatasetError("dataset.manifest-invalid", "manifest is too large")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DatasetError("dataset.manifest-invalid", f"manifest is not JSON: {exc}") from exc
    manifest = _typed(doc)
    if manifest is None or manifest.format != MANIFEST_FORMAT:
        raise DatasetError(
            "dataset.manifest-invalid",
            f"not a {MANIFEST_FORMAT} manifest (unknown, missing or mistyped fields)",
        )
    return manifest


def verify_manifest(ring: KeyRing, manifest: Manifest) -> None:
    """Check the manifest's signature under any key the ring holds.

    Raises:
        DatasetError: ``dataset.manifest-invalid`` if the key is unknown or the
            signature does not match (the manifest was edited or signed elsewhere).
    """
    if manifest.key_id not in ring.keys:
        raise DatasetError(
            "dataset.manifest-invalid",
            f"manifest signed by unknown key id {manifest.key_id[:32]!r}",
        )
    expected = _signature(ring, manifest.key_id, manifest.body())
    if not hmac.compare_digest(expected, manifest.signature):
        raise DatasetError(
            "dataset.manifest-invalid", "manifest signature does not verify (edited or forged)"
        )


class ManifestSigner:
    """Signs manifests under the current policy and verifies them under any held key.

    Args:
        keys: the key ring (its signing key signs; any key verifies).
        policy: the policy datasets are built under (its fingerprint is signed in).
        clock: Unix-seconds clock for ``created_at``.
    """

    def __init__(self, keys: KeyRing, policy: Policy, clock: Callable[[], float]) -> None:
        self._keys = keys
        self._policy = policy
        self._clock = clock

    def sign(
        self,
        *,
        dataset_id: str,
        tenant: TenantId,
        tree: MerkleRoot,
        agreement_id: str,
        supersedes: str | None,
    ) -> Manifest:
        """Return a manifest of the records whose digests ``tree`` holds, signed now."""
        return sign_manifest(
            self._keys,
            dataset_id=dataset_id,
            tenant=tenant,
            record_count=tree.count,
            merkle_root=tree.hexdigest(),
            policy_version=POLICY_VERSION,
            policy_fingerprint=policy_fingerprint(self._policy),
            agreement_id=agreement_id,
            created_at=int(self._clock()),
            supersedes=supersedes,
        )

    def verify(self, manifest: Manifest) -> None:
        """Check the manifest's signature; see :func:`verify_manifest`.

        Raises:
            DatasetError: ``dataset.manifest-invalid``.
        """
        verify_manifest(self._keys, manifest)
