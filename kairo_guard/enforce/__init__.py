"""Deciding at a sink: the sink check, decorators and lazy streams.

Each record goes through the ambient context, its seal, the fingerprint net and the
class's PII policy, and comes out as a decision in a check report. Imports
:mod:`kairo_guard.core`, :mod:`kairo_guard.detect` and :mod:`kairo_guard.otel`.
"""
