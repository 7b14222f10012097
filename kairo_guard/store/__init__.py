"""Durable state: the store contract and its SQLite and PostgreSQL implementations.

Agreements, API keys, datasets, models, provenance rows, retention periods, shards,
audit anchors and fingerprints live behind :class:`~kairo_guard.store.base.Store` (the
contract and every row type, in :mod:`.base`). :class:`~kairo_guard.store.sql_store.SQLStore`
implements it once in SQL (:mod:`.sql_store` with its tables in :mod:`.sqlite_datasets`,
:mod:`.sqlite_tenants`, :mod:`.sqlite_shards` and :mod:`.sqlite_anchor`, run through the
:class:`~kairo_guard.store.sql.Database` of :mod:`.sql`); its backends only open a
database and migrate it (:mod:`.migrations`): :class:`~kairo_guard.store.sqlite.SQLiteStore`
is the embedded default (:mod:`.sqlite`, :mod:`.sqlite_db`), and
:class:`~kairo_guard.store.postgres.PostgresStore` the store of several replicas
(:mod:`.postgres`, :mod:`.postgres_db`, :mod:`.postgres_schema`; psycopg, the
``postgres`` extra, is imported only when one opens). Also here: key files
(:mod:`.keyfile`) and the ingestion spool (:mod:`.spool`). Imports only
:mod:`kairo_guard.core`.
"""
