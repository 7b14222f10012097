"""Where customer content comes in: the ASGI middleware, tenant resolvers, API keys,
streaming body fingerprints and the request's provenance.

Imports every layer below it; nothing in the package imports it but the
:class:`~kairo_guard.guard.Guard`'s users and the CLI.
"""
