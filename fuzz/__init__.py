"""Fuzz harnesses of the guard's parsers: seals, JSONL records, credentials, baggage.

One module per target (``fuzz_<target>.py``), each with ``test_one_input(data)`` that
checks the target's invariants on one input and raises :class:`~fuzz.harness.Finding`
when one breaks. ``python -m fuzz <target> [libFuzzer options]`` runs a harness under
atheris with the library instrumented for coverage; ``python -m fuzz.campaign`` runs all
of them for a documented number of executions (``make fuzz``); ``python -m fuzz.seeds``
writes the seed corpora in ``fuzz/corpus/<target>/``; ``tests/fuzz`` runs each harness
over its seeds and generated inputs inside ``make test``.

Nothing here ships in the wheel: the harnesses hold fixed, public keys.
"""
