"""Type stub of the native door (``_door.c``; see that file and :mod:`..door`)."""

from collections.abc import Generator
from typing import Any

class Admission:
    message: dict[str, Any] | None
    def __await__(self) -> Generator[Any, None, int]: ...

class Door:
    def __init__(self, config: dict[str, Any], /) -> None: ...
    def serve(
        self, scope: Any, receive: Any, send: Any, tenant: str, size: int, /
    ) -> Admission: ...
