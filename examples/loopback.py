"""Serve an ASGI app on a loopback port from a thread, for examples that run in one process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


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
