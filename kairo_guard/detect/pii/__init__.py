"""The PII gate: presidio-analyzer over spaCy's English NER, offline, fail closed.

- :mod:`~kairo_guard.detect.pii.gate`: :class:`PiiGate`, the engine (settings, scans,
  batching); pure Python at import. :mod:`~kairo_guard.detect.pii.pool` runs it across
  worker processes for large batches.
- :mod:`~kairo_guard.detect.pii.prefilters`: cheap text checks that decide which
  recognizers, and whether NER, could find anything in a text; pure Python.
- :mod:`~kairo_guard.detect.pii.recognizers` and :mod:`~kairo_guard.detect.pii.analysis`:
  the presidio recognizers and NLP engine, and the analysis of texts in one process.
  They import presidio and spaCy at top, so only the gate imports them, once it has
  checked that the ``pii`` extra is installed.
- :mod:`~kairo_guard.detect.pii.check`: the gate as a content check before shared sinks
  and vetting (reasons name JSON paths, never text), and the message scrubber.
"""
