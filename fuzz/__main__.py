"""Run one harness under atheris: ``python -m fuzz <target> [libFuzzer options] [corpus ...]``.

The library (``kairo_guard``) is imported under ``atheris.instrument_imports``, so
libFuzzer sees the coverage of its Python code and the operands of its comparisons
(``kg1``, ``Bearer ``, key ids); atheris' ``str`` hook reports the operands of
``startswith`` and ``endswith`` too. Its regular-expression hook is left off: atheris
3.0 fails on byte patterns holding ``.`` (``cryptography`` compiles one at import), and
it swaps every compiled pattern for a proxy. The C extensions are not instrumented
(that needs clang's ``-fsanitize=fuzzer-no-link``; this machine has gcc only): they are
exercised through their Python callers, and the credentials harness holds the native
gate to the Python fast path's answers.
"""

from __future__ import annotations

import sys

import atheris

from fuzz.targets import TARGETS


def main(argv: list[str]) -> None:
    """Fuzz the target named first in ``argv``; the rest goes to libFuzzer."""
    if not argv or argv[0] not in TARGETS:
        sys.exit(f"usage: python -m fuzz {{{','.join(TARGETS)}}} [libFuzzer options] [corpus ...]")
    module = TARGETS[argv[0]]
    atheris.enabled_hooks.add("str")
    # the library only: the harness's own checks would cost time and add no coverage
    # of the library (their branches follow the input, not the code under test)
    with atheris.instrument_imports(include=["kairo_guard"]):
        harness = __import__(module, fromlist=["test_one_input"])
    harness.world()  # keys, stores, shards: built once, before the first input
    atheris.Setup([sys.argv[0], *argv[1:]], harness.test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv[1:])
