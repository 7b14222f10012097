"""The secret key ring: one signing key, any number of verification keys.

Keys come from ``KAIRO_GUARD_KEY`` (``kid:base64url[,kid:base64url...]``, the first one
signs) or from a key file made by ``kairo-guard keys init`` (JSON, mode 0600; read and
written by :mod:`kairo_guard.store.keyfile`: this module does no I/O). Every
purpose gets its own subkey derived with HMAC-SHA256, so a seal key never doubles as
the pseudonym or audit-head key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from kairo_guard.core.exceptions import KeyringError
from kairo_guard.core.types import KEY_ID_PATTERN

ENV_KEY = "KAIRO_GUARD_KEY"
"""Environment variable holding ``kid:base64url`` keys, comma separated, signer first."""
MIN_KEY_BYTES = 32
KEY_FILE_VERSION = 1

_B64URL = re.compile(r"[A-Za-z0-9_-]+")

PURPOSE_SEAL = "seal"
PURPOSE_PSEUDONYM = "pseudonym"
PURPOSE_AUDIT_HEAD = "audit-head"
PURPOSE_FINGERPRINT = "fingerprint"
PURPOSE_FILTER = "fingerprint-filter"
PURPOSE_BAGGAGE = "baggage"
PURPOSE_MANIFEST = "manifest"
PURPOSE_IDENTIFIER = "customer-identifier"


def b64url(data: bytes) -> str:
    """Unpadded base64url of ``data`` (how keys are written)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Decode unpadded base64url.

    Raises:
        KeyringError: if ``text`` is not base64url.
    """
    if not _B64URL.fullmatch(text):
        raise KeyringError("a key is not valid base64url (A-Z a-z 0-9 - _)")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise KeyringError("a key is not valid base64url") from exc


def _derive(master: bytes, purpose: str) -> bytes:
    return hmac.digest(master, b"kairo-guard/v1/" + purpose.encode("ascii"), "sha256")


_PSEUDONYM_CACHE = 100_000


@dataclass(frozen=True)
class KeyRing:
    """Secret keys by id; ``signing_key_id`` names the one that signs new seals.

    ``pseudonym_key_id`` names the key whose subkey pseudonymizes tenant ids; it stays
    fixed across rotations so pseudonyms stay stable.
    """

    keys: Mapping[str, bytes]
    signing_key_id: str
    pseudonym_key_id: str = ""
    _derived: dict[tuple[str, str], bytes] = field(default_factory=dict, repr=False, compare=False)
    _pseudonyms: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyringError("the key ring is empty")
        for kid, key in self.keys.items():
            if KEY_ID_PATTERN.fullmatch(kid) is None:
                raise KeyringError(f"invalid key id {kid!r}: use 1-32 of A-Z a-z 0-9 _ -")
            if len(key) < MIN_KEY_BYTES:
                raise KeyringError(f"key {kid!r} is shorter than {MIN_KEY_BYTES} bytes")
        if self.signing_key_id not in self.keys:
            raise KeyringError(f"signing key {self.signing_key_id!r} is not in the ring")
        if not self.pseudonym_key_id:
            object.__setattr__(self, "pseudonym_key_id", self.signing_key_id)
        if self.pseudonym_key_id not in self.keys:
            raise KeyringError(f"pseudonym key {self.pseudonym_key_id!r} is not in the ring")

    def subkey(self, purpose: str, key_id: str | None = None) -> bytes:
        """Return the subkey for ``purpose`` derived from key ``key_id`` (default: signer).

        Raises:
            KeyringError: if ``key_id`` is not in the ring.
        """
        kid = self.signing_key_id if key_id is None else key_id
        cached = self._derived.get((purpose, kid))
        if cached is not None:
            return cached
        master = self.keys.get(kid)
        if master is None:
            raise KeyringError(f"unknown key id {kid!r}")
        derived = _derive(master, purpose)
        self._derived[(purpose, kid)] = derived
        return derived

    def subkeys(self, purpose: str) -> dict[str, bytes]:
        """Return ``{key_id: subkey}`` for every key in the ring."""
        return {kid: self.subkey(purpose, kid) for kid in self.keys}

    def pseudonym(self, tenant: str) -> str:
        """Return the keyed pseudonym of a tenant id: stable, not reversible without the key."""
        cache = self._pseudonyms
        found = cache.get(tenant)
        if found is None:  # hmac.digest costs ~10 us under OpenSSL 3: once per tenant
            key = self.subkey(PURPOSE_PSEUDONYM, self.pseudonym_key_id)
            found = "tp_" + hmac.digest(key, tenant.encode("utf-8"), "sha256")[:12].hex()
            if len(cache) >= _PSEUDONYM_CACHE:
                cache.clear()
            cache[tenant] = found
        return found

    @classmethod
    def generate(cls, key_id: str = "k1") -> KeyRing:
        """Return a ring with one fresh random 32-byte key."""
        return cls(keys={key_id: secrets.token_bytes(MIN_KEY_BYTES)}, signing_key_id=key_id)

    @classmethod
    def from_env_value(cls, value: str) -> KeyRing:
        """Parse ``kid:base64url[,kid:base64url...]``; the first key signs.

        Raises:
            KeyringError: if the value is malformed.
        """
        keys: dict[str, bytes] = {}
        for part in value.split(","):
            kid, sep, b64 = part.strip().partition(":")
            if not sep:
                raise KeyringError(f"{ENV_KEY} must look like 'k1:<base64url key>[,k0:<key>]'")
            if kid in keys:
                raise KeyringError(f"{ENV_KEY} names key id {kid!r} twice")
            keys[kid] = unb64url(b64.strip())
        return cls(keys=keys, signing_key_id=next(iter(keys)))

    def to_env_value(self) -> str:
        """Return the ring as a ``KAIRO_GUARD_KEY`` value, signer first."""
        order = [self.signing_key_id, *(k for k in self.keys if k != self.signing_key_id)]
        return ",".join(f"{kid}:{b64url(self.keys[kid])}" for kid in order)

    def to_json(self) -> bytes:
        """Return the key-file encoding of the ring."""
        doc = {
            "version": KEY_FILE_VERSION,
            "signing_key_id": self.signing_key_id,
            "pseudonym_key_id": self.pseudonym_key_id,
            "keys": {kid: b64url(key) for kid, key in self.keys.items()},
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> KeyRing:
        """Parse a key file.

        Raises:
            KeyringError: if it is not a well-formed key file.
        """
        try:
            doc = orjson.loads(data)
            if doc.get("version") != KEY_FILE_VERSION:
                raise KeyringError(f"unsupported key file version {doc.get('version')!r}")
            keys = {str(kid): unb64url(str(b64)) for kid, b64 in doc["keys"].items()}
            return cls(
                keys=keys,
                signing_key_id=str(doc["signing_key_id"]),
                pseudonym_key_id=str(doc.get("pseudonym_key_id") or ""),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise KeyringError(f"malformed key file: {exc}") from exc


def pseudonymize_name(name: str, tenant: str | None, pseudonym: str | None) -> str:
    """Return ``name`` with every occurrence of ``tenant`` replaced by ``pseudonym``.

    Names that reach the audit log or telemetry (a seal's source such as
    ``upload:acme``, a sink such as ``acmeft``) may embed a tenant id, inside a word
    too. Every occurrence goes, so the id never leaves the process; the cost is a
    garbled neighbour (``upload:acmeco`` becomes ``upload:<pseudonym>co``), which
    reveals nothing. Without a tenant or pseudonym the name is returned unchanged.
    """
    if not tenant or not pseudonym:
        return name
    return name.replace(tenant, pseudonym)


def fingerprint_of(ring: KeyRing) -> str:
    """Return a short non-secret id of the signing key, for logs and `keys` output."""
    return hashlib.sha256(ring.subkey("key-fingerprint")).hexdigest()[:16]
