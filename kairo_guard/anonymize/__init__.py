"""The k-anonymous telemetry aggregator: the only way to mint anonymized telemetry.

Imports core, store, audit and detect.
"""
