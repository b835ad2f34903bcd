"""Conformance suites that every registered searcher and scheduler must pass.

They are plain functions that raise ``AssertionError``; ``tests/`` runs them over
the registries, and third-party extensions can run them on their own classes.
"""
