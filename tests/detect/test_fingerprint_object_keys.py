"""The fingerprint net reads object keys as text: a secret cannot hide in a key."""

from __future__ import annotations

from pathlib import Path

import pytest
from kg_testing import make_guard

from kairo_guard import ContentRefused, Guard

SECRET = (
    "Acme board minutes: the Lisbon plant doubles output in the third quarter and forty "
    "engineers move to the battery line under a supplier agreement nobody has seen yet."
)


@pytest.fixture
def net(tmp_path: Path) -> Guard:
    """A guard whose fingerprint net holds one of acme's secrets."""
    g = make_guard(tmp_path / "net", pii_gate=False)
    g.index_content("acme", {"text": SECRET})
    return g


def test_when_an_object_key_holds_a_tenant_s_text_then_vetting_refuses_it(net: Guard) -> None:
    with pytest.raises(ContentRefused):
        net.seal_operator_data({SECRET: "x"}, source="t")
