"""The vocabulary every layer shares, with no I/O of its own.

Types and the exception tree, canonical content and its digest, keys and seals,
the policy, sinks, check reports and the ambient tenant context. Imports nothing
from the rest of the package.
"""
