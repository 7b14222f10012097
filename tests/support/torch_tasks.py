"""Datasets for the tests of kairo_guard.integrations.torch, importable by name, as a
spawned DataLoader worker needs."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info


class RecordStream(IterableDataset[dict[str, Any]]):
    """Yields ``records``; with ``splits_itself``, each DataLoader worker only its share
    (as Hugging Face's iterable datasets do)."""

    def __init__(self, records: list[dict[str, Any]], *, splits_itself: bool = False) -> None:
        self.records = records
        self.splits_itself = splits_itself

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if not self.splits_itself or info is None:
            return iter(self.records)
        return islice(self.records, info.id, None, info.num_workers)
