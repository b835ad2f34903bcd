"""Launching searches: building a ``tune.Tuner`` from a file, the CLI, results."""
