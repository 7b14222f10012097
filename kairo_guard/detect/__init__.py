"""Recognizing customer content and personal data in what reaches a sink.

Keyed winnowing fingerprints and their index (:mod:`~kairo_guard.detect.fingerprint`),
the fingerprint net as the guard runs it and the Bloom filter export for workers, a
record's strings with their JSON paths (:mod:`~kairo_guard.detect.fields`, what refusal
reasons name), and the PII gate (:mod:`kairo_guard.detect.pii`: presidio and spaCy,
offline). Imports :mod:`kairo_guard.core` and :mod:`kairo_guard.store`.
"""
