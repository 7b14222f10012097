"""OpenTelemetry: the guard's own spans and metrics, baggage, scrubbing exporters.

Depends on ``opentelemetry-api`` only (the SDK is the host's); never raises into the
host. Imports :mod:`kairo_guard.core` and :mod:`kairo_guard.detect` (the scrubbers
judge text with the fingerprint index and the PII gate).
"""
