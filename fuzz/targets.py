"""The fuzz targets: each one's harness module, by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

TARGETS = {
    "seal": "fuzz.fuzz_seal",
    "jsonl": "fuzz.fuzz_jsonl",
    "credentials": "fuzz.fuzz_credentials",
    "baggage": "fuzz.fuzz_baggage",
}
"""Target name -> harness module (``test_one_input``, ``seed_inputs``, ``world``)."""


def harness(target: str) -> ModuleType:
    """Import the harness of ``target``.

    Raises:
        KeyError: an unknown target.
    """
    return importlib.import_module(TARGETS[target])


def entry(target: str) -> Callable[[bytes], None]:
    """The ``test_one_input`` of ``target``'s harness."""
    found: Callable[[bytes], None] = harness(target).test_one_input
    return found
