"""The ``kairo-guard`` command line: one module per command group.

The top layer: it may import anything in the package, and nothing imports it.
"""
