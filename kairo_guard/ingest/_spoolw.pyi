"""Type stub of the native spool writer (``_spoolw.c``; see that file)."""

from typing import Any

class Writer:
    queued_bytes: int
    pending: bool
    def __init__(
        self, directory: str, segment_bytes: int, sync: bool, error_class: type[Exception]
    ) -> None: ...
    def submit(
        self,
        future: Any,
        tenant: bytes,
        meta: bytes,
        body: bytes,
        head: bytes | None,
        rest: bytes,
        block: bytes,
        /,
    ) -> None: ...
    def complete(self, budget_ns: int = 0, signalled: bool = True, /) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> int | None: ...
