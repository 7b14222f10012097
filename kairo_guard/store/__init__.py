"""Durable state: the store contract and its SQLite implementation.

Agreements, API keys, datasets, models, provenance rows, retention periods and
fingerprints live behind :class:`~kairo_guard.store.base.Store` (the contract and every
row type, in :mod:`.base`); :class:`~kairo_guard.store.sqlite.SQLiteStore` is the
embedded default (:mod:`.sqlite`, with its tables in :mod:`.sqlite_datasets` and
:mod:`.sqlite_tenants` and its connection in :mod:`.sqlite_db`). Imports only
:mod:`kairo_guard.core`.
"""
