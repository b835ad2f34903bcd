"""Reading Microsoft NNI ``search_space.json`` files (``{"name": {"_type": ..., "_value": ...}}``).

NNI's bounds: ``randint`` is ``[lower, upper)`` (upper excluded), which becomes
autometa's inclusive ``randint`` ``[lower, upper - 1]``. Nested choices use
``_name``, which becomes ``name``. ``qnormal``/``lognormal``/``qlognormal`` have
no exact autometa counterpart and are rejected with a clear message.
"""

from __future__ import annotations

import math
from typing import Any

from autometa.space.errors import SpaceError

_SIMPLE = {"uniform": "uniform", "loguniform": "loguniform"}
_QUANTIZED = {"quniform": "quniform", "qloguniform": "qloguniform"}
_UNSUPPORTED = ("qnormal", "lognormal", "qlognormal")


def is_nni_document(data: Any) -> bool:
    """Whether a parsed document looks like an NNI search space."""
    return (isinstance(data, dict) and bool(data)
            and all(isinstance(v, dict) and "_type" in v for v in data.values()))


def nni_to_document(data: dict) -> dict:
    """Translate an NNI search space into an autometa document ``{"parameters": ...}``."""
    return {"parameters": {name: _param(spec, (name,)) for name, spec in data.items()}}


def _param(spec: dict, at: tuple) -> dict:
    kind, value = spec.get("_type"), spec.get("_value")
    extra = set(spec) - {"_type", "_value"}
    if extra:
        raise SpaceError(f"unknown NNI key {sorted(extra)[0]!r}; expected _type and _value", key_path=at)
    if not isinstance(value, list):
        raise SpaceError("expected '_value' to be a list", key_path=at + ("_value",))
    if kind == "choice":
        if value and all(isinstance(v, dict) for v in value):
            return {"type": "choice", "values": [_nested_option(v, at + ("_value", i))
                                                 for i, v in enumerate(value)]}
        return {"type": "choice", "values": value}
    if kind == "randint":
        low, high = _args(value, 2, at)
        if low != int(low) or high != int(high):
            raise SpaceError("NNI randint bounds must be integers", key_path=at + ("_value",))
        return {"type": "randint", "low": int(low), "high": int(high) - 1}
    if kind in _SIMPLE:
        low, high = _args(value, 2, at)
        return {"type": _SIMPLE[kind], "low": low, "high": high}
    if kind in _QUANTIZED:
        low, high, q = _args(value, 3, at)
        return {"type": _QUANTIZED[kind], "low": low, "high": high, "q": q}
    if kind == "normal":
        mu, sigma = _args(value, 2, at)
        return {"type": "normal", "mu": mu, "sigma": sigma}
    if kind in _UNSUPPORTED:
        raise SpaceError(f"NNI type {kind!r} has no exact autometa counterpart; use normal, "
                         "loguniform or qloguniform", key_path=at + ("_type",))
    raise SpaceError(f"unknown NNI type {kind!r}", key_path=at + ("_type",))


def _nested_option(option: dict, at: tuple) -> dict:
    if "_name" not in option:
        raise SpaceError("each option of a nested NNI choice needs '_name'", key_path=at)
    out: dict[str, Any] = {"name": option["_name"]}
    for key, sub in option.items():
        if key == "_name":
            continue
        out[key] = _param(sub, at + (key,)) if isinstance(sub, dict) and "_type" in sub else sub
    return out


def _args(value: list, n: int, at: tuple) -> list[float]:
    if len(value) != n or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise SpaceError(f"expected '_value' to be {n} numbers, got {value!r}", key_path=at + ("_value",))
    if not all(math.isfinite(v) for v in value):
        raise SpaceError(f"expected '_value' to be {n} finite numbers, got {value!r}",
                         key_path=at + ("_value",))
    return value
