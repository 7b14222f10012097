"""The hash-chained audit log: its writer and its verifier.

Entries hold digests and pseudonyms, never content. Imports only
:mod:`kairo_guard.core`.
"""
