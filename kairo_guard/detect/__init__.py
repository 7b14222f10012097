"""Recognizing customer content and personal data in what reaches a sink.

Keyed winnowing fingerprints and their index, the Bloom filter export for
workers, and the PII gate (presidio and spaCy, offline). Imports
:mod:`kairo_guard.core` and :mod:`kairo_guard.store`.
"""
