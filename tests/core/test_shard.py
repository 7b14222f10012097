"""Shard manifests, their Merkle root and signature, and kp1 seals: the pure parts."""

from __future__ import annotations

import hashlib

import pytest

from kairo_guard.core.exceptions import KeyringError, SealError
from kairo_guard.core.keys import KeyRing
from kairo_guard.core.seal import Label, SealCodec
from kairo_guard.core.shard import (
    ShardManifest,
    digest_index,
    merkle_root,
    merkle_root_python,
    parse_shard_seal,
    shard_id_of,
    shard_seal,
    sign_manifest,
    verify_manifest,
)
from kairo_guard.core.signing import SignerKeys, VerifyKeys
from kairo_guard.core.types import DataClass


def _rfc6962(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written as the RFC does (recursive split at the largest
    power of two below n): the reference the iterative code is held to."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\0" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\1" + _rfc6962(leaves[:k]) + _rfc6962(leaves[k:])).digest()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 13, 64, 100])
def test_merkle_root_is_rfc6962s(n: int) -> None:
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(n)]
    assert merkle_root(b"".join(leaves)) == _rfc6962(leaves).hex()


def test_merkle_root_changes_with_order_and_refuses_ragged_input() -> None:
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    assert merkle_root(a + b) != merkle_root(b + a)
    with pytest.raises(ValueError, match="32-byte"):
        merkle_root(a + b[:31])


def _manifest(**changes: object) -> ShardManifest:
    fields: dict[str, object] = {
        "data_class": DataClass.OPERATOR_PUBLIC,
        "source": "docs",
        "created_at": 1_764_979_200,
        "expires_at": None,
        "records": 2,
        "root": "a" * 64,
        "fingerprints": "b" * 64,
        "watermark": 17,
        "policy": "c" * 64,
        "key_id": "s1",
    }
    fields.update(changes)
    return ShardManifest(**fields)  # type: ignore[arg-type]


def test_a_signed_manifest_verifies_and_reads_back_the_same() -> None:
    signer = SignerKeys.generate("s1")
    manifest = _manifest()
    signature = sign_manifest(manifest, signer)
    assert verify_manifest(manifest.encode(), signature, signer.public()) == manifest


def test_a_manifest_signed_by_another_key_of_the_same_id_does_not_verify() -> None:
    trusted, other = SignerKeys.generate("s1"), SignerKeys.generate("s1")
    manifest = _manifest()
    with pytest.raises(SealError) as bad:
        verify_manifest(manifest.encode(), sign_manifest(manifest, other), trusted.public())
    assert bad.value.code == "bad-tag"


def test_a_manifest_of_an_untrusted_key_id_is_unknown() -> None:
    signer = SignerKeys.generate("s9")
    manifest = _manifest(key_id="s9")
    signature = sign_manifest(manifest, signer)
    with pytest.raises(SealError) as bad:
        verify_manifest(manifest.encode(), signature, SignerKeys.generate("s1").public())
    assert bad.value.code == "unknown-key"


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.replace(b'"count":2', b'"count":3'),  # more records than signed
        lambda b: b.replace(b'"watermark":17', b'"watermark":99'),
        lambda b: b.replace(b"operator_public", b"anonymized_telemetry"),
    ],
)
def test_any_change_to_a_signed_manifest_fails_its_signature(edit: object) -> None:
    signer = SignerKeys.generate("s1")
    manifest = _manifest()
    signature = sign_manifest(manifest, signer)
    changed = edit(manifest.encode())  # type: ignore[operator]
    assert changed != manifest.encode()
    with pytest.raises(SealError) as bad:
        verify_manifest(changed, signature, signer.public())
    assert bad.value.code == "bad-tag"


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"v":1}',
        _manifest().encode().replace(b'"v":1', b'"v":2'),
        _manifest().encode().replace(b"operator_public", b"customer_content"),
        _manifest().encode().replace(b'"count":2', b'"count":-2'),
        _manifest().encode().replace(b'"key_id":"s1"', b'"key_id":"s 1"'),
        _manifest().encode().replace(b",", b", "),  # not canonical
    ],
)
def test_a_malformed_manifest_is_refused_before_any_signature_check(data: bytes) -> None:
    with pytest.raises(SealError) as bad:
        verify_manifest(data, b"\0" * 64, SignerKeys.generate("s1").public())
    assert bad.value.code == "bad-payload"


def test_a_signer_refuses_a_manifest_of_a_restricting_class_or_another_key() -> None:
    signer = SignerKeys.generate("s1")
    with pytest.raises(ValueError, match="not a permitting class"):
        sign_manifest(_manifest(data_class=DataClass.CUSTOMER_CONTENT), signer)
    with pytest.raises(ValueError, match="signing key"):
        sign_manifest(_manifest(key_id="s2"), signer)


def test_the_shard_id_names_the_signer_too() -> None:
    manifest = _manifest().encode()
    a = shard_id_of(manifest, sign_manifest(_manifest(), SignerKeys.generate("s1")))
    b = shard_id_of(manifest, sign_manifest(_manifest(), SignerKeys.generate("s1")))
    assert a != b
    assert len(a) == 32


@pytest.mark.parametrize(
    "seal",
    ["kp1.", "kp1.abc.def", "kp1." + "0" * 32 + "." + "0" * 63, "kp1." + "G" * 32 + "." + "0" * 64],
)
def test_a_malformed_kp1_seal_is_malformed(seal: str) -> None:
    with pytest.raises(SealError) as bad:
        parse_shard_seal(seal)
    assert bad.value.code == "malformed"


def test_a_kp1_seal_reads_back() -> None:
    seal = shard_seal("1" * 32, "2" * 64)
    assert parse_shard_seal(seal) == ("1" * 32, "2" * 64)


def test_an_hmac_key_holder_cannot_make_or_pass_a_permitting_kg1_seal() -> None:
    codec = SealCodec(KeyRing.generate())
    label = Label(None, DataClass.OPERATOR_PUBLIC, "docs", 1, None, "0" * 64)
    with pytest.raises(ValueError, match="vetting role"):
        codec.seal(label)
    with pytest.raises(ValueError, match="vetting role"):
        codec.sealer_for(tenant=None, data_class=DataClass.ANONYMIZED_TELEMETRY, source="x")


def test_a_codec_without_a_shard_opener_refuses_kp1_seals() -> None:
    with pytest.raises(SealError) as bad:
        SealCodec(KeyRing.generate()).open(shard_seal("1" * 32, "2" * 64))
    assert bad.value.code == "unknown-key"


def test_key_encodings_round_trip_and_refuse_junk() -> None:
    signer = SignerKeys.generate("s1").rotated("s2")
    again = SignerKeys.from_value(signer.to_value())
    assert again.signing_key_id == "s2"
    assert set(again.keys) == {"s1", "s2"}
    message = b"m"
    kid, signature = again.sign(message)
    assert signer.public().verify(kid, signature, message)
    assert VerifyKeys.from_json(signer.public().to_json()).verify(kid, signature, message)
    assert not signer.public().verify(kid, signature, b"n")
    for junk in ("", "s1", "s1:abc", "s 1:" + "A" * 43, "s1:" + "A" * 43 + ",s1:" + "A" * 43):
        with pytest.raises(KeyringError):
            SignerKeys.from_value(junk)
    with pytest.raises(KeyringError):
        signer.rotated("s1")


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 1000, 1001])
def test_the_native_merkle_root_is_the_python_ones(n: int) -> None:
    digests = b"".join(hashlib.sha256(f"{n}-{i}".encode()).digest() for i in range(n))
    assert merkle_root(digests) == merkle_root_python(digests)
    with pytest.raises(ValueError, match="32-byte"):
        merkle_root(digests + b"x")


@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_the_digest_index_numbers_each_digest(n: int) -> None:
    seeds = [i % 5 if n == 7 else i for i in range(n)]  # n == 7: digests repeat
    digests = b"".join(hashlib.sha256(str(seed).encode()).digest() for seed in seeds)
    expected = {digests[32 * i : 32 * i + 32].hex(): i for i in range(n)}  # repeats: the last
    assert digest_index(digests) == expected
    with pytest.raises(ValueError, match="32-byte"):
        digest_index(digests + b"x")
