"""Where customer content comes in: the ASGI middleware, who the caller is (API keys,
a trusted proxy's header, signed tenant baggage from trusted peers), each request's
body (capped, digested and fingerprinted as it streams) and its provenance.

The top layer but the CLI: the middleware is handed a :class:`~kairo_guard.guard.Guard`,
so this package may import every layer below it, the Guard included; nothing else in
the package imports it (the public facade re-exports its entry points).
"""
