"""Ed25519 keys of the roles that permit: vetting operator data, aggregating telemetry.

A permitting label (``operator_public``, ``anonymized_telemetry``) is worth only what
its signer checked, so it is signed with a key that the processes which merely check
records never hold. The vetting and aggregating roles hold a :class:`SignerKeys`
(private keys, ``KAIRO_GUARD_SIGNER_KEY`` or ``signer.json``, mode 0600); every other
process holds a :class:`VerifyKeys` (public keys, ``KAIRO_GUARD_VERIFY_KEYS`` or
``verify-keys.json``), with which it can check a signature and make none. The HMAC
key ring (:mod:`kairo_guard.core.keys`) stays for restricting seals: whoever holds it
can only make labels that keep data *out* of shared sinks.

Both encodings are ``kid:base64url[,kid:base64url...]``, the first key of a signer
signing; a private key is its 32-byte seed, a public key its 32 raw bytes. This module
does no I/O (:mod:`kairo_guard.store.keyfile` reads and writes the files).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kairo_guard.core.exceptions import KeyringError
from kairo_guard.core.keys import b64url, unb64url
from kairo_guard.core.types import KEY_ID_PATTERN

ENV_SIGNER_KEY = "KAIRO_GUARD_SIGNER_KEY"
"""Environment variable holding the signing role's private keys (seeds), signer first."""
ENV_VERIFY_KEYS = "KAIRO_GUARD_VERIFY_KEYS"
"""Environment variable holding the public keys permitting labels are verified with."""
SIGNER_FILE_VERSION = 1
_KEY_BYTES = 32


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _parse_pairs(value: str, name: str) -> dict[str, bytes]:
    """Parse ``kid:base64url[,...]`` into ``{kid: 32 bytes}``.

    Raises:
        KeyringError: malformed, a duplicate id, a bad id or a key of the wrong size.
    """
    keys: dict[str, bytes] = {}
    for part in value.split(","):
        kid, sep, b64 = part.strip().partition(":")
        if not sep:
            raise KeyringError(f"{name} must look like 'kid:<base64url key>[,kid:<key>]'")
        if KEY_ID_PATTERN.fullmatch(kid) is None:
            raise KeyringError(f"invalid key id {kid!r} in {name}: use 1-32 of A-Z a-z 0-9 _ -")
        if kid in keys:
            raise KeyringError(f"{name} names key id {kid!r} twice")
        raw = unb64url(b64.strip())
        if len(raw) != _KEY_BYTES:
            raise KeyringError(f"key {kid!r} in {name} is not {_KEY_BYTES} bytes (Ed25519)")
        keys[kid] = raw
    return keys


@dataclass(frozen=True)
class VerifyKeys:
    """Public keys by id: what a process that checks permitting labels holds."""

    keys: Mapping[str, Ed25519PublicKey]

    def verify(self, key_id: str, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is ``key_id``'s signature of ``message``."""
        key = self.keys.get(key_id)
        if key is None:
            return False
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __contains__(self, key_id: object) -> bool:
        return key_id in self.keys

    def merged(self, other: VerifyKeys) -> VerifyKeys:
        """Both sets of keys; a key id in both must name the same key.

        Raises:
            KeyringError: one id names two different keys.
        """
        keys = dict(self.keys)
        for kid, key in other.keys.items():
            mine = keys.get(kid)
            if mine is not None and _raw_public(mine) != _raw_public(key):
                raise KeyringError(f"verification key id {kid!r} names two different keys")
            keys[kid] = key
        return VerifyKeys(keys)

    @classmethod
    def from_value(cls, value: str) -> VerifyKeys:
        """Parse ``kid:base64url[,...]`` (``KAIRO_GUARD_VERIFY_KEYS``, the file's ``keys``).

        Raises:
            KeyringError: if the value is malformed.
        """
        pairs = _parse_pairs(value, ENV_VERIFY_KEYS)
        return cls({kid: Ed25519PublicKey.from_public_bytes(raw) for kid, raw in pairs.items()})

    def to_value(self) -> str:
        """The ``kid:base64url,...`` encoding of these public keys."""
        return ",".join(f"{kid}:{b64url(_raw_public(k))}" for kid, k in self.keys.items())

    def to_json(self) -> bytes:
        """The verification key file (public: anyone may read it)."""
        return _file_json(self.to_value())

    @classmethod
    def from_json(cls, data: bytes) -> VerifyKeys:
        """Parse a verification key file.

        Raises:
            KeyringError: if it is not one.
        """
        return cls.from_value(_file_value(data, "verification key"))


@dataclass(frozen=True)
class SignerKeys:
    """Private keys by id; ``signing_key_id`` names the one that signs.

    Held by the vetting and aggregating roles only. Older keys stay in the set after a
    rotation so that what they signed still verifies where their public keys are known.
    """

    keys: Mapping[str, Ed25519PrivateKey]
    signing_key_id: str

    def __post_init__(self) -> None:
        if self.signing_key_id not in self.keys:
            raise KeyringError(f"signing key {self.signing_key_id!r} is not among the keys")

    def sign(self, message: bytes) -> tuple[str, bytes]:
        """Return ``(key id, signature)`` of ``message`` under the signing key."""
        return self.signing_key_id, self.keys[self.signing_key_id].sign(message)

    def public(self) -> VerifyKeys:
        """The public keys of these keys: what a verifying process is given."""
        return VerifyKeys({kid: k.public_key() for kid, k in self.keys.items()})

    @classmethod
    def generate(cls, key_id: str = "s1") -> SignerKeys:
        """A set of one fresh key."""
        if KEY_ID_PATTERN.fullmatch(key_id) is None:
            raise KeyringError(f"invalid key id {key_id!r}: use 1-32 of A-Z a-z 0-9 _ -")
        return cls({key_id: Ed25519PrivateKey.generate()}, key_id)

    def rotated(self, key_id: str) -> SignerKeys:
        """These keys plus a fresh one, which signs from now on.

        Raises:
            KeyringError: ``key_id`` is taken or invalid.
        """
        if key_id in self.keys:
            raise KeyringError(f"signing key id {key_id!r} is already in use")
        fresh = SignerKeys.generate(key_id)
        return SignerKeys({key_id: fresh.keys[key_id], **self.keys}, key_id)

    @classmethod
    def from_value(cls, value: str) -> SignerKeys:
        """Parse ``kid:base64url-seed[,...]``; the first key signs.

        Raises:
            KeyringError: if the value is malformed.
        """
        pairs = _parse_pairs(value, ENV_SIGNER_KEY)
        keys = {kid: Ed25519PrivateKey.from_private_bytes(raw) for kid, raw in pairs.items()}
        return cls(keys, next(iter(keys)))

    def to_value(self) -> str:
        """The ``kid:base64url-seed,...`` encoding, signer first (secret)."""
        order = [self.signing_key_id, *(k for k in self.keys if k != self.signing_key_id)]
        return ",".join(f"{kid}:{b64url(self._seed(kid))}" for kid in order)

    def _seed(self, kid: str) -> bytes:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        return self.keys[kid].private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def to_json(self) -> bytes:
        """The signer key file (secret: mode 0600)."""
        return _file_json(self.to_value())

    @classmethod
    def from_json(cls, data: bytes) -> SignerKeys:
        """Parse a signer key file.

        Raises:
            KeyringError: if it is not one.
        """
        return cls.from_value(_file_value(data, "signer key"))


def _file_json(value: str) -> bytes:
    return orjson.dumps({"version": SIGNER_FILE_VERSION, "keys": value}, option=orjson.OPT_INDENT_2)


def _file_value(data: bytes, what: str) -> str:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise KeyringError(f"malformed {what} file: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != SIGNER_FILE_VERSION:
        raise KeyringError(f"malformed {what} file: want version {SIGNER_FILE_VERSION}")
    value = doc.get("keys")
    if not isinstance(value, str) or not value:
        raise KeyringError(f"malformed {what} file: no keys")
    return value
