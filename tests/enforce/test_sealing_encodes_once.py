"""Sealing customer content encodes it once: the digest the seal carries is the one the
fingerprint net's canonical-form guard needed, not a second encoding of the record."""

from __future__ import annotations

from typing import Any

import pytest
from corpus import prose

import kairo_guard.core.content as content_module
from kairo_guard import Guard

DOC = {"title": "contract", "body": prose("acme-supply-contract", 2)[:600]}


def _count_encodings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    dumps = content_module._dumps

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls[0] += 1
        return dumps(*args, **kwargs)

    monkeypatch.setattr(content_module, "_dumps", counting)
    return calls


def test_when_customer_content_is_sealed_then_it_is_canonically_encoded_once(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_encodings(monkeypatch)
    guard.seal(DOC, tenant="acme", source="upload")
    assert calls[0] == 1


def test_when_a_record_is_labeled_then_it_is_canonically_encoded_once(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_encodings(monkeypatch)
    labeled = guard.label_record(DOC, tenant="acme", source="upload")
    assert calls[0] == 1
    assert guard.open_seal(labeled["_kairo"]).digest == content_module.content_digest(DOC)
