"""Reading Microsoft NNI ``search_space.json`` files (``{"name": {"_type": ..., "_value": ...}}``).

NNI's bounds: ``randint`` is ``[lower, upper)`` (upper excluded), which becomes
autometa's inclusive ``randint`` ``[lower, upper - 1]``. A nested choice keeps NNI's
``_name`` (``name_key: _name``), so that the trial reads ``value["_name"]`` as under NNI;
options without ``_name`` (NNI 2 samples them as sub-spaces all the same) are named by
their position, ``"0"``, ``"1"``, ..., with a warning. ``quniform``/``qloguniform`` draw
``clip(round(x / q) * q, low, high)`` in NNI, so a bound that is not a multiple of ``q`` is a
value of its own there; autometa draws multiples of ``q`` only, so such bounds move inward to
the nearest multiples, with a warning. ``qnormal``/``lognormal``/``qlognormal`` have no exact
autometa counterpart and are rejected with a clear message. Warnings are
:class:`~autometa.space.errors.SpaceWarning`s naming the file, line and key.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from autometa.space.distributions import on_grid
from autometa.space.errors import SpaceError, SpaceWarning

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
        dicts = [isinstance(v, dict) for v in value]
        if value and all(dicts):
            unnamed = [i for i, v in enumerate(value) if "_name" not in v]
            if unnamed:
                warnings.warn(SpaceWarning(
                    f"options {unnamed} have no '_name': named by their position "
                    f"({', '.join(repr(str(i)) for i in unnamed)}), which the trial's value "
                    "carries as '_name'", key_path=at + ("_value",)), stacklevel=2)
            return {"type": "choice", "name_key": "_name", "values": [
                _nested_option(v, at + ("_value", i), str(i)) for i, v in enumerate(value)]}
        if any(dicts):
            raise SpaceError("mix of sub-spaces (mappings) and plain values in one choice: give "
                             "every option as a mapping with a '_name'", key_path=at + ("_value",))
        for i, v in enumerate(value):
            if _holds_spec(v):
                warnings.warn(SpaceWarning(
                    "an NNI spec ({'_type': ...}) inside a list value is not sampled (NNI 2 "
                    "does not sample it either): the trial receives the list as written",
                    key_path=at + ("_value", i)), stacklevel=2)
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
        return {"type": _QUANTIZED[kind], **_multiples(low, high, q, at), "q": q}
    if kind == "normal":
        mu, sigma = _args(value, 2, at)
        return {"type": "normal", "mu": mu, "sigma": sigma}
    if kind in _UNSUPPORTED:
        raise SpaceError(f"NNI type {kind!r} has no exact autometa counterpart; use normal, "
                         "loguniform or qloguniform", key_path=at + ("_type",))
    raise SpaceError(f"unknown NNI type {kind!r}", key_path=at + ("_type",))


def _nested_option(option: dict, at: tuple, position: str) -> dict:
    out: dict[str, Any] = {"_name": option.get("_name", position)}
    for key, sub in option.items():
        if key == "_name":
            continue
        out[key] = _param(sub, at + (key,)) if isinstance(sub, dict) and "_type" in sub else sub
    return out


def _holds_spec(value: Any) -> bool:
    """Whether a list value carries an NNI spec somewhere inside it."""
    if isinstance(value, dict):
        return "_type" in value or any(_holds_spec(v) for v in value.values())
    return isinstance(value, list) and any(_holds_spec(v) for v in value)


def _multiples(low: float, high: float, q: float, at: tuple) -> dict[str, float]:
    """``low`` and ``high`` moved inward to multiples of ``q`` (warned when they move)."""
    if q <= 0:
        raise SpaceError(f"q must be positive, got {q!r}", key_path=at + ("_value",))
    inner_low = low if on_grid(low, q) else math.ceil(low / q) * q
    inner_high = high if on_grid(high, q) else math.floor(high / q) * q
    if inner_low > inner_high:
        raise SpaceError(f"no multiple of q={q} lies in [{low}, {high}]",
                         key_path=at + ("_value",))
    if (inner_low, inner_high) != (low, high):
        warnings.warn(SpaceWarning(
            f"[{low}, {high}] are not multiples of q={q}: NNI clips its draws to those bounds; "
            f"autometa draws the multiples of q in [{inner_low:g}, {inner_high:g}]",
            key_path=at + ("_value",)), stacklevel=3)
    return {"low": inner_low, "high": inner_high}


def _args(value: list, n: int, at: tuple) -> list[float]:
    if len(value) != n or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise SpaceError(f"expected '_value' to be {n} numbers, got {value!r}", key_path=at + ("_value",))
    if not all(math.isfinite(v) for v in value):
        raise SpaceError(f"expected '_value' to be {n} finite numbers, got {value!r}",
                         key_path=at + ("_value",))
    return value
