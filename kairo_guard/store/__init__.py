"""Durable state: the store protocol and its SQLite implementation.

Agreements, datasets, models, provenance rows, retention and fingerprints live
behind :class:`~kairo_guard.store.base.Store`. Imports only :mod:`kairo_guard.core`.
"""
