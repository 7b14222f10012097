"""Type stub of the native admission of the fast path (``_gate.c``; see that file)."""

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

class Keys:
    def __init__(
        self,
        *,
        pepper: bytes,
        cache: dict[bytes, Any],
        store: Any,
        clock: Callable[[], float],
        ahead: float,
        refreshing: set[bytes],
        refresh: Callable[[bytes, str], None],
    ) -> None: ...
    def fingerprint(self, data: bytes, /) -> bytes: ...
    def cached(self, presented: bytes, /) -> str | None: ...

class Gate:
    def __init__(
        self,
        *,
        keys: Keys,
        refused: tuple[bytes, ...],
        max_size: int,
        plain: dict[Any, bool],
        route_plain: Callable[[Any], bool],
        context: Callable[[], Any] | ContextVar[Any],
        tracer: Callable[[], Any],
        overloaded: Callable[[], bool],
        route_cache_size: int,
        recheck: float = 0.0,
    ) -> None: ...
    def admit(self, scope: Any, /) -> tuple[str, int] | None: ...
