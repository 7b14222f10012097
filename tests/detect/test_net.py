"""The fingerprint net refuses content it could not read to the end."""

from __future__ import annotations

from typing import Any

import pytest

from kairo_guard import ContentError, Guard


def _self_containing() -> list[Any]:
    loop: dict[str, Any] = {"text": "a document"}
    loop["again"] = loop
    items: list[Any] = ["a document"]
    items.append(items)
    deep: Any = "a document"
    for _ in range(10_000):
        deep = [deep]
    return [loop, items, {"deep": deep}]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("content", _self_containing(), ids=["dict-cycle", "list-cycle", "deep"])
def test_when_content_contains_itself_or_nests_too_deep_then_indexing_refuses_it(
    guard: Guard, content: Any
) -> None:
    with pytest.raises(ContentError):
        guard.index_content("acme", content)
