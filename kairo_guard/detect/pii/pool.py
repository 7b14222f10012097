"""Worker processes for the PII gate: a large batch is split across processes.

Each worker builds its own gate (same settings, one process) when it starts, then
analyses the shards it is sent. Only texts go out and only ``(entity_type, start, end,
score)`` tuples or a guard failure code come back, so the cost of crossing processes is
small next to the analysis (unlike spaCy's own ``n_process``, which sends whole Docs
back).

Workers are started with ``spawn`` (safe in a process that runs threads) and load the
model in the background from the moment the pool is created. A shard whose worker
fails is analysed in the calling process: a failure costs time, never a finding. The
gate hands its class over (pickled by reference), so this module never imports it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

#: A result sent between processes: the results of one text, or a failure code.
WireResult = list[tuple[str, int, int, float]] | str

#: Analyses distinct texts in the calling process (the gate's own method).
Analyse = Callable[[Sequence[str]], list[list[Any] | str]]

_worker_gate: Any = None


def _start_worker(gate_class: Callable[..., Any], settings: dict[str, Any]) -> None:
    global _worker_gate  # one gate per worker process, built once
    _worker_gate = gate_class(**{**settings, "processes": 1})


def _ready() -> bool:
    return _worker_gate is not None


def analyse_shard(texts: Sequence[str]) -> list[WireResult]:
    """Run in a worker: the worker gate's results for ``texts``, as plain tuples."""
    if _worker_gate is None:
        raise RuntimeError("PII gate worker used before it started")
    return [
        r if isinstance(r, str) else [(x.entity_type, x.start, x.end, x.score) for x in r]
        for r in _worker_gate.analyse_distinct(list(texts))
    ]


class GatePool:
    """``workers`` processes, each holding a gate ``gate_class(**settings)``.

    Args:
        gate_class: the gate's class (handed over, so this module never imports it).
        settings: the gate's keyword arguments but ``processes``.
        workers: how many worker processes.
    """

    def __init__(
        self, gate_class: Callable[..., Any], settings: dict[str, Any], workers: int
    ) -> None:
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(gate_class, settings),
        )
        # Start the workers now, so the model loads while the caller does other work.
        self._warm = [self._executor.submit(_ready) for _ in range(workers)]

    def submit(self, texts: Sequence[str]) -> Future[list[WireResult]]:
        """Send a shard to a worker."""
        return self._executor.submit(analyse_shard, list(texts))

    def analyse(self, texts: list[str], here: Analyse) -> list[list[Any] | str]:
        """Analyse one shard with ``here`` (in this process) and the others in the
        workers, at the same time; a shard whose worker fails is analysed ``here``."""
        size = -(-len(texts) // (self.workers + 1))
        shards = [texts[i : i + size] for i in range(0, len(texts), size)]
        futures: list[Future[list[WireResult]] | None] = []
        for shard in shards[1:]:
            try:
                futures.append(self.submit(shard))
            except Exception:  # noqa: BLE001 - a broken or closed pool: analyse here
                futures.append(None)
        out = here(shards[0])
        for shard, future in zip(shards[1:], futures, strict=True):
            try:
                if future is None:
                    raise RuntimeError("shard not sent")
                out.extend(from_wire(future.result()))
            except Exception:  # noqa: BLE001 - a failed worker costs time, never a finding
                out.extend(here(shard))
        return out

    def close(self) -> None:
        """Stop the workers (pending shards are cancelled)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def from_wire(results: list[WireResult]) -> list[list[Any] | str]:
    """Turn a worker's tuples back into presidio ``RecognizerResult`` objects."""
    from presidio_analyzer import RecognizerResult

    return [
        r if isinstance(r, str) else [RecognizerResult(e, s, t, score) for e, s, t, score in r]
        for r in results
    ]
