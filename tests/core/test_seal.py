"""Seals: round trip, strict parsing, and that no tampering ever verifies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairo_guard import DataClass, KeyRing, Label, SealCodec, SealError, content_digest
from kairo_guard.core.seal import MAX_SEAL_LENGTH

RING = KeyRing.generate("k1")
CODEC = SealCodec(RING)
LABEL = Label.create(
    tenant="acme",
    data_class=DataClass.CUSTOMER_CONTENT,
    source="upload",
    created_at=1_700_000_000,
    expires_at=1_800_000_000,
    digest=content_digest({"text": "hello"}),
)
SEAL = CODEC.seal(LABEL)


def test_when_sealed_then_opens_to_the_same_label_with_key_id() -> None:
    assert CODEC.open(SEAL) == LABEL._replace(key_id="k1")
    assert SEAL.startswith("kg1.k1.")


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ("", "malformed"),
        ("kg1.k1.abc", "malformed"),
        ("kg2" + SEAL[3:], "malformed"),
        (SEAL + ".x", "malformed"),
        ("x" * (MAX_SEAL_LENGTH + 1), "malformed"),
        (SEAL.replace("kg1.k1.", "kg1.k9."), "unknown-key"),
        (SEAL[:-2] + ("AA" if not SEAL.endswith("AA") else "BB"), "bad-tag"),
        (SEAL + "é", "malformed"),
    ],
)
def test_when_seal_is_malformed_then_seal_error_with_code(bad: str, code: str) -> None:
    with pytest.raises(SealError) as info:
        CODEC.open(bad)
    assert info.value.code == code


@pytest.mark.parametrize("value", [None, 42, b"kg1.k1.a.b", ["kg1"], {"seal": SEAL}])
def test_when_seal_is_not_a_string_then_malformed(value: object) -> None:
    with pytest.raises(SealError) as info:
        CODEC.open(value)
    assert info.value.code == "malformed"


def test_when_signed_by_another_ring_with_same_key_id_then_bad_tag() -> None:
    other = SealCodec(KeyRing.generate("k1"))
    with pytest.raises(SealError) as info:
        other.open(SEAL)
    assert info.value.code == "bad-tag"


def test_when_key_rotated_then_old_seals_verify_and_new_ones_use_new_key() -> None:
    rotated = KeyRing(keys={**RING.keys, "k2": b"n" * 32}, signing_key_id="k2")
    codec = SealCodec(rotated)
    assert codec.open(SEAL).key_id == "k1"
    assert codec.seal(LABEL).startswith("kg1.k2.")


def _signed_with_real_key(payload: str) -> str:
    """A payload signed correctly with the real key, to test post-MAC validation."""
    from kairo_guard.core.keys import PURPOSE_SEAL
    from kairo_guard.core.seal import _Mac

    signed = f"kg1.k1.{payload}"
    return f"{signed}.{_Mac(RING.subkey(PURPOSE_SEAL, 'k1')).tag(signed)}"


D = "a" * 64


@pytest.mark.parametrize(
    "payload",
    [
        f"{D}~acme~customer_content~1~",  # too few fields
        f"{D}~acme~secret_class~1~~upload",  # class
        f"{D}~acme~customer_content~one~~upload",  # created
        f"{D}~acme~customer_content~1~-5~upload",  # expires
        f"{'a' * 10}~acme~customer_content~1~~upload",  # digest too short
        f"{'A' * 64}~acme~customer_content~1~~upload",  # digest not lowercase hex
        f"{D}~acme~customer_content~{'9' * 20}~~upload",  # absurd timestamp
    ],
)
def test_when_signed_payload_has_wrong_shape_then_bad_payload(payload: str) -> None:
    with pytest.raises(SealError) as info:
        CODEC.open(_signed_with_real_key(payload))
    assert info.value.code == "bad-payload"


def test_source_with_any_printable_ascii_round_trips() -> None:
    label = LABEL._replace(source="s3://bucket/a b~c.d%20e")
    seal = CODEC.seal(label)
    assert CODEC.open(seal).source == label.source
    assert all(c.isalnum() or c in "-._~%" for c in seal)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tenant": None}, "needs a valid tenant"),
        ({"tenant": "bad tenant!"}, "needs a valid tenant"),
        ({"data_class": DataClass.OPERATOR_PUBLIC}, "carries no tenant"),
        ({"source": " padded"}, "printable ASCII"),
        ({"expires_at": 1_600_000_000}, "after created_at"),
        ({"digest": "XYZ"}, "64 lowercase hex"),
    ],
)
def test_when_label_fields_invalid_then_create_refuses(
    changes: dict[str, object], message: str
) -> None:
    fields = LABEL._asdict() | changes
    fields.pop("key_id")
    with pytest.raises(ValueError, match=message):
        Label.create(**fields)


def test_when_label_built_without_create_then_seal_still_validates() -> None:
    with pytest.raises(ValueError, match="needs a valid tenant"):
        CODEC.seal(LABEL._replace(tenant=None))


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0, max_value=len(SEAL) - 1), data=st.data())
def test_any_byte_changed_never_verifies(position: int, data: st.DataObject) -> None:
    alphabet = st.characters(min_codepoint=0, max_codepoint=0x2FF)
    replacement = data.draw(alphabet.filter(lambda c: c != SEAL[position]))
    tampered = SEAL[:position] + replacement + SEAL[position + 1 :]
    with pytest.raises(SealError):
        CODEC.open(tampered)


FIELDS = ["digest", "tenant", "data_class", "created_at", "expires_at", "source"]


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(FIELDS), data=st.data())
def test_any_field_changed_without_the_key_never_verifies(field: str, data: st.DataObject) -> None:
    """An attacker without the key edits a payload field and keeps the tag."""
    values = {
        "digest": st.text("0123456789abcdef", min_size=64, max_size=64),
        "tenant": st.sampled_from(["globex", "acme2", ""]),
        "data_class": st.sampled_from(["operator_public", "anonymized_telemetry"]),
        "created_at": st.integers(0, 2**39).map(str),
        "expires_at": st.sampled_from(["", "1800000001", "2000000000"]),
        "source": st.sampled_from(["public", "upload2"]),
    }
    head, tag = SEAL.rsplit(".", 1)
    prefix, payload = head[:7], head[7:]
    fields = payload.split("~", 5)
    index = FIELDS.index(field)
    fields[index] = data.draw(values[field].filter(lambda v: v != fields[index]))
    forged = f"{prefix}{'~'.join(fields)}.{tag}"
    with pytest.raises(SealError):
        CODEC.open(forged)


def test_when_seal_signed_with_wrong_key_then_never_verifies() -> None:
    attacker = SealCodec(KeyRing(keys={"k1": b"a" * 32}, signing_key_id="k1"))
    forged = attacker.seal(LABEL._replace(data_class=DataClass.CUSTOMER_CONTENT))
    with pytest.raises(SealError):
        CODEC.open(forged)
