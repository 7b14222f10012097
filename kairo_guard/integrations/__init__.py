"""Thin adapters between kairo-guard and the frameworks training and serving code lives
in: one module a framework, each importing its framework only through its own extra
(``pip install "kairo-guard[fastapi]"``).

They live inside the package (``kairo_guard.integrations.fastapi``), not in a
distribution of their own: one install and one version carry the guard and its
adapters, an adapter can use the guard's public API only (it is the top layer: no
module of the guard imports it, which the layering test checks), and a framework that is
not installed costs nothing until its adapter is imported.
"""
