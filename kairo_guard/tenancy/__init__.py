"""What a tenant owns: agreements, datasets and manifests, models, retention,
erasure and export.

Each piece takes the collaborators it needs (store, keys, audit log, clock), never
the :class:`~kairo_guard.guard.Guard`. Imports the layers below it: core, store,
audit, detect and enforce.
"""
