"""The k-anonymous telemetry aggregator: the only way to mint anonymized telemetry.

:class:`~kairo_guard.anonymize.aggregator.TelemetryAggregator` is handed the
collaborators it needs (the :class:`~kairo_guard.enforce.sealing.Sealer` whose
``mint`` seals its output, the audit log, the pseudonym function), never the Guard.
Imports core, store, audit, detect and enforce.
"""
