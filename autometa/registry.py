"""The lookup shared by the registries (searchers, schedulers, trainables).

Each registry is a plain dict from a name to ``"module:attribute"``, so listing
names imports nothing heavy; the attribute is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any


def lookup(table: dict[str, str], kind: str, name: str) -> Any:
    """Import and return what ``table`` registers as ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(table)}")
    module, attr = table[name].split(":")
    return getattr(importlib.import_module(module), attr)
