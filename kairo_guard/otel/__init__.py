"""OpenTelemetry: the guard's own spans and metrics, tenant baggage, scrubbing exporters.

Depends on ``opentelemetry-api`` only (the SDK is the host's); never raises into the
host. :mod:`~kairo_guard.otel.names` is the vocabulary (span, attribute and metric
names); :mod:`~kairo_guard.otel.protocols` says what the exporters and token helpers
need of a guard, so this layer imports :mod:`kairo_guard.core`, :mod:`kairo_guard.store`
and :mod:`kairo_guard.detect` only, never the ``Guard`` or ingestion above it.
"""
