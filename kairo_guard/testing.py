"""Helpers for testing code that uses kairo-guard (and kairo-guard itself).

:func:`mint_unchecked` makes permitting seals (operator data, anonymized telemetry)
without the checks that normally justify them: it exists so that tests of training code
can feed a shared sink records that pass. It needs the guard's key, like any minting,
and every seal it makes is written to the audit log as ``"event": "seal.unchecked"``,
so its use in production would be on the record.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kairo_guard.content import content_digest
from kairo_guard.guard import Guard
from kairo_guard.keys import KeyRing
from kairo_guard.seal import Label
from kairo_guard.types import SEAL_FIELD, DataClass, TenantId


def make_guard(home: Path, *, ring: KeyRing | None = None, **kwargs: Any) -> Guard:
    """Return a Guard on a fresh state directory with a fresh key (or ``ring``)."""
    kwargs.setdefault("env", {})
    return Guard(home=home, key=ring or KeyRing.generate(), **kwargs)


def mint_unchecked(
    guard: Guard,
    content: object,
    *,
    data_class: DataClass | str,
    tenant: TenantId | None = None,
    source: str = "test",
    created_at: int | None = None,
    expires_at: int | None = None,
) -> str:
    """Return a seal of any class for ``content``, skipping the minting checks."""
    cls = DataClass(data_class)
    created = int(guard.clock() if created_at is None else created_at)
    label = Label.create(
        tenant=tenant,
        data_class=cls,
        source=source,
        created_at=created,
        expires_at=expires_at,
        digest=content_digest(content),
    )
    guard.audit.append(
        {"event": "seal.unchecked", "class": cls.value, "digest": label.digest, "source": source}
    )
    return guard.codec.seal(label)


def sealed_record(guard: Guard, record: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Return ``record`` with a seal from :func:`mint_unchecked` under ``_kairo``."""
    body = {k: v for k, v in record.items() if k != SEAL_FIELD}
    return {**body, SEAL_FIELD: mint_unchecked(guard, body, **kwargs)}


@contextmanager
def running_server(app: Any, *, host: str = "127.0.0.1", **options: Any) -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn on a free loopback port; yield its base URL.

    Uvicorn's proxy-header rewriting is off unless ``proxy_headers=True`` is passed,
    so the app sees the real peer address.

    Raises:
        RuntimeError: if the server does not start within 10 seconds.
    """
    import uvicorn  # test helper: uvicorn is a development dependency

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    options = {"log_level": "warning", "proxy_headers": False, "lifespan": "auto", **options}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
