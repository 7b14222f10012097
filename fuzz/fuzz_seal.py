"""Fuzz the seal parser and verifier: ``kg1`` HMAC seals, ``kp1`` shard seals, manifests.

The first byte picks what the rest of the input is:

0. a seal string, opened by a real :class:`SealCodec` whose ring holds two keys (``k1``
   signs, ``k0`` is rotated out but verifies) and whose shard registry holds two genuine
   vetted shards in a real SQLite store;
1. a value that is not a ``str`` (bytes, None, a number, a ``str`` subclass);
2. a ``kp1`` seal for :func:`parse_shard_seal` alone;
3. the fields of a label, sealed and opened again;
4. a shard manifest and its signature, decoded and verified.

Invariants:

- only :class:`SealError` (with a documented ``code``) escapes the parsers, only
  ``ValueError`` the sealers;
- **no allow**: a ``kg1`` seal verifies only if it is byte for byte the seal the real
  key makes of the label it opens to; a ``kp1`` seal only if it is a genuine record's
  of a genuine shard; a manifest only with its genuine signature; a verified label is
  a valid one;
- a label that validates seals into an ASCII string of at most ``MAX_SEAL_LENGTH``
  that opens to the same label, as ``sealer_for`` and the documented ``seal_parts``
  formula make it, and that ``split_sealed_line`` finds in its sealed line.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import numpy as np

from fuzz.harness import NOW, Finding, Reader, attempt, key_ring, require, scratch_dir, signer_keys
from kairo_guard.core.content import content_digest, sealed_line, split_sealed_line
from kairo_guard.core.exceptions import SealError
from kairo_guard.core.seal import MAX_SEAL_LENGTH, Label, SealCodec
from kairo_guard.core.shard import ShardManifest, parse_shard_seal, shard_seal, verify_manifest
from kairo_guard.core.signing import VerifyKeys
from kairo_guard.core.types import DataClass
from kairo_guard.enforce.shards import ShardRegistry, ShardWriter
from kairo_guard.store.sqlite import DB_FILE_NAME, SQLiteStore

TARGET = "seal"
CODES = frozenset({"malformed", "unknown-key", "bad-tag", "bad-payload"})
SOURCES = ("upload", "api:v1/docs", "a~b.c%d e", "x" * 256)
CONTENTS: tuple[object, ...] = (
    {"text": "hello"},
    {"text": "hello", "n": 1},
    "plain text",
    [1, 2, 3],
    {},
)
POLICY = "ab" * 32


@dataclass(frozen=True)
class World:
    """The real keys, codec and shards every input is judged against."""

    codec: SealCodec
    codecs: dict[str, SealCodec]
    """A codec per key id, signing with that key: what re-seals a verified label."""
    shard_seals: dict[str, tuple[Label, str]]
    """Every genuine ``kp1`` seal and what it opens to."""
    manifests: frozenset[tuple[bytes, bytes]]
    """Every genuine (manifest, signature)."""
    verify_keys: VerifyKeys


def genuine_labels() -> list[Label]:
    """Restricting labels the seeds seal (with each key)."""
    labels = []
    for i, content in enumerate(CONTENTS):
        tenant = ("acme", "globex", "a.b_c-D9", "t" * 128)[i % 4]
        for cls in (DataClass.CUSTOMER_CONTENT, DataClass.USAGE_TELEMETRY):
            expires = None if i % 2 else NOW + 86_400 * (i + 1)
            labels.append(
                Label.create(
                    tenant=tenant,
                    data_class=cls,
                    source=SOURCES[i % len(SOURCES)],
                    created_at=NOW - i,
                    expires_at=expires,
                    digest=content_digest(content),
                )
            )
    return labels


@functools.cache
def world() -> World:
    """Build the world once per process."""
    store = SQLiteStore(scratch_dir(TARGET) / DB_FILE_NAME)
    signer = signer_keys()
    writer = ShardWriter(
        signer,
        store,
        audit=[],
        clock=lambda: NOW,
        retention=lambda *_: None,
    )
    shard_seals: dict[str, tuple[Label, str]] = {}
    manifests = set()
    for cls, created in (
        (DataClass.OPERATOR_PUBLIC, NOW - 10),
        (DataClass.ANONYMIZED_TELEMETRY, 0),
    ):
        digests = [content_digest(c) for c in CONTENTS]
        empty = [np.zeros(0, dtype=np.int64) for _ in digests]
        made = writer.write(
            cls, "docs", digests, empty, watermark=0, policy=POLICY, created_at=created
        )
        for seal, digest in zip(made, digests, strict=True):
            label = Label(None, cls, "docs", created, None, "", signer.signing_key_id)
            shard_seals[seal] = (label, digest)
        row = store.get_shard(parse_shard_seal(made[0])[0])
        if row is None:
            raise Finding("the genuine shard was not kept")
        manifests.add((row.manifest, row.signature))
    keys = signer.public()
    registry = ShardRegistry(store, keys, {}, store)
    codecs = {kid: SealCodec(key_ring(kid)) for kid in ("k1", "k0")}
    return World(SealCodec(key_ring(), registry), codecs, shard_seals, frozenset(manifests), keys)


def test_one_input(data: bytes) -> None:
    """Check the seal invariants on one input (see the module docstring)."""
    reader = Reader(data)
    mode = reader.byte() % 5
    if mode == 0:
        check_verify(_text(reader))
    elif mode == 1:
        check_not_a_string(reader)
    elif mode == 2:
        check_parse_shard_seal(_text(reader))
    elif mode == 3:
        check_round_trip(reader)
    else:
        check_manifest(reader)


def _text(reader: Reader) -> str:
    encoding = reader.choice(("latin-1", "utf-8"))
    return reader.rest().decode(encoding, "replace")


def check_verify(text: str) -> None:
    """A seal opens only if it is genuine, and then to a valid label."""
    w = world()
    found = attempt(lambda: w.codec.verify(text), (SealError,), "SealCodec.verify")
    if isinstance(found, SealError):
        require(found.code in CODES, f"undocumented SealError code {found.code!r}")
        opened = attempt(lambda: w.codec.open(text), (SealError,), "SealCodec.open")
        require(isinstance(opened, SealError), "open accepts a seal verify refuses")
        return
    label, digest = found
    if text.startswith("kp1."):
        require(w.shard_seals.get(text) == (label, digest), f"forged shard seal allowed: {text!r}")
        return
    require(label.data_class.restricts, f"a kg1 seal opened to {label.data_class}")
    require(label.key_id in w.codecs, f"opened under unknown key {label.key_id!r}")
    again = w.codecs[label.key_id].seal(label._replace(digest=digest))
    require(again == text, f"seal allowed that is not the real key's seal: {text!r}")
    whole = label._replace(digest=digest)
    Label.create(
        tenant=whole.tenant,
        data_class=whole.data_class,
        source=whole.source,
        created_at=whole.created_at,
        expires_at=whole.expires_at,
        digest=whole.digest,
    )
    require(w.codec.open(text) == whole, "open and verify disagree")


class _Seal(str):
    """A ``str`` subclass: its methods could lie, so it is not a seal."""

    __slots__ = ()


def check_not_a_string(reader: Reader) -> None:
    """Only a ``str`` is a seal: anything else is ``malformed``."""
    w = world()
    genuine = next(iter(w.shard_seals))
    body = reader.rest()
    kind = body[:1]
    value: object = {
        b"b": body,
        b"a": bytearray(body),
        b"n": None,
        b"i": int.from_bytes(body[:8], "big"),
        b"s": _Seal(body.decode("latin-1")),
        b"g": _Seal(genuine),
        b"l": [body.decode("latin-1")],
    }.get(kind, memoryview(body))
    found = attempt(lambda: w.codec.verify(value), (SealError,), "SealCodec.verify")
    require(isinstance(found, SealError), f"a {type(value).__name__} verified as a seal")
    if isinstance(found, SealError):
        require(found.code == "malformed", f"a non-str seal is {found.code!r}, not malformed")


def check_parse_shard_seal(text: str) -> None:
    """``parse_shard_seal`` takes exactly ``kp1.<32 hex>.<64 hex>``."""
    found = attempt(lambda: parse_shard_seal(text), (SealError,), "parse_shard_seal")
    if isinstance(found, SealError):
        require(found.code == "malformed", f"parse_shard_seal code {found.code!r}")
        return
    shard_id, digest = found
    require(shard_seal(shard_id, digest) == text, f"parse_shard_seal is not exact: {text!r}")
    hexes = set("0123456789abcdef")
    require(len(shard_id) == 32 and set(shard_id) <= hexes, "shard id is not 32 hex")
    require(len(digest) == 64 and set(digest) <= hexes, "digest is not 64 hex")


def _fields(reader: Reader) -> tuple[Any, Any, Any, Any, Any, Any]:
    def text() -> str:
        return reader.chunk().decode(reader.choice(("latin-1", "utf-8")), "replace")

    def number() -> int:
        return reader.number(6)

    tenant = reader.pick((None, "acme", "t" * 128, "t" * 129, ""), text)
    data_class = reader.choice((*DataClass, "customer_content", "bogus"))
    source = reader.pick(("upload", "a~b.c%d e", "x" * 256, "x" * 257, " x"), text)
    created = reader.pick((NOW, 0, -1, 2**40 - 1, 2**40, True, float(NOW)), number)
    expires = reader.pick((None, NOW + 1, NOW, 2**40 - 1, 2**40, False), number)
    digest = reader.pick((content_digest({}), "A" * 64, "0" * 63), lambda: reader.chunk().hex())
    return tenant, data_class, source, created, expires, digest


def check_round_trip(reader: Reader) -> None:
    """A valid restricting label seals and opens back to itself, as every sealer makes
    it; an invalid one (or a permitting one) is refused with ``ValueError``."""
    w = world()
    tenant, data_class, source, created, expires, digest = _fields(reader)
    made = attempt(
        lambda: Label.create(
            tenant=tenant,
            data_class=data_class,
            source=source,
            created_at=created,
            expires_at=expires,
            digest=digest,
        ),
        (ValueError,),
        "Label.create",
    )
    raw = Label(tenant, data_class, source, created, expires, digest)
    label = raw if isinstance(made, ValueError) else made
    sealed = attempt(lambda: w.codec.seal(label), (ValueError,), "SealCodec.seal")
    restricting = isinstance(made, Label) and made.data_class.restricts
    require(isinstance(sealed, str) == restricting, f"seal() of {label!r} gave {sealed!r}")
    if not isinstance(sealed, str) or not isinstance(made, Label):
        return
    require(len(sealed) <= MAX_SEAL_LENGTH and sealed.isascii(), "a seal too long or not ASCII")
    require(
        w.codec.open(sealed) == made._replace(key_id="k1"), f"{sealed!r} opens to another label"
    )
    seal = w.codec.sealer_for(tenant=made.tenant, data_class=made.data_class, source=made.source)
    require(seal(made.digest, made.created_at, made.expires_at) == sealed, "sealer_for differs")
    head, middle, tail, block = w.codec.seal_parts(
        tenant=made.tenant, data_class=made.data_class, source=made.source
    )
    expires_text = "" if made.expires_at is None else str(made.expires_at)
    signed = f"{head}{made.digest}{middle}{made.created_at}~{expires_text}{tail}"
    tag = base64.urlsafe_b64encode(hmac.digest(block, signed.encode(), hashlib.sha256))
    require(sealed == f"{signed}.{tag.rstrip(b'=').decode()}", "seal_parts formula differs")
    line = sealed_line({"k": 1}, sealed)
    require(split_sealed_line(line.rstrip(b"\n")) == (b'{"k":1}', sealed), "sealed line split")


def check_manifest(reader: Reader) -> None:
    """A manifest decodes only from its canonical bytes and verifies only with its
    genuine signature."""
    w = world()
    signature = reader.chunk()
    body = reader.rest()
    decoded = attempt(lambda: ShardManifest.decode(body), (SealError,), "ShardManifest.decode")
    if isinstance(decoded, ShardManifest):
        require(decoded.encode() == body, "a manifest decoded from non-canonical bytes")
    else:  # hostile nesting included: "shard manifest is not JSON: depth limit exceeded"
        require(decoded.code == "bad-payload", f"manifest decode code {decoded.code!r}")
    verified = attempt(
        lambda: verify_manifest(body, signature, w.verify_keys), (SealError,), "verify_manifest"
    )
    if isinstance(verified, SealError):
        require(verified.code in CODES, f"undocumented SealError code {verified.code!r}")
    else:
        require((body, signature) in w.manifests, "a forged manifest verified")


def seed_inputs() -> dict[str, bytes]:
    """Named seeds: genuine seals of both keys and both shards, one byte-flipped seal,
    values that are not strings, labels to round-trip and the genuine manifests."""
    w = world()
    found: dict[str, bytes] = {}
    for kid, codec in sorted(w.codecs.items()):
        for i, label in enumerate(genuine_labels()[:4]):
            found[f"verify-{kid}-{i}"] = b"\x00\x00" + codec.seal(label).encode()
    for i, seal in enumerate(sorted(w.shard_seals)[::3]):
        found[f"verify-kp1-{i}"] = b"\x00\x00" + seal.encode()
        found[f"parse-kp1-{i}"] = b"\x02\x00" + seal.encode()
    flipped = bytearray(w.codec.seal(genuine_labels()[0]).encode())
    flipped[10] ^= 1
    found["verify-flipped"] = b"\x00\x00" + bytes(flipped)
    for kind in b"bangsli":
        found[f"not-a-string-{chr(kind)}"] = b"\x01" + bytes([kind]) + b"kg1.k1.x"
    # mode 3: tenant, class, source, created, expires, digest (see _fields)
    found["round-trip-plain"] = b"\x03\x01\x00\x00\x00\x01\x00"
    found["round-trip-odd-source"] = b"\x03\x02\x01\x01\x03\x00\x00"
    found["round-trip-fuzzed"] = (
        b"\x03\x05\x05a.b-c\x00\x01\x05\x04% ~.\x01\x07\x00\x00\x69\x55\x7a\x00\x00\x03\x20"
        + b"\xab" * 32
    )
    found["manifest-hostile-nesting"] = b"\x04\x00" + b'{"v":' * 1500 + b"1" + b"}" * 1500
    for i, (manifest, signature) in enumerate(sorted(w.manifests)):
        found[f"manifest-{i}"] = b"\x04" + bytes([len(signature)]) + signature + manifest
    return found
