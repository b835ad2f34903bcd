"""Parsing one parameter's distribution keys (``low``, ``high``, ``q``, ``values``...).

Each parser takes the parameter's mapping and its key path and returns the fields of a
:class:`~autometa.space.parameters.Parameter`, or raises :class:`SpaceError`.
"""

from __future__ import annotations

import math
from typing import Any

from autometa.space.errors import SpaceError, shown_value
from autometa.space.parameters import _same
from autometa.trial.keys import finite_number

RESERVED_NAMES = {"eval": "Tune evaluates {'eval': ...} as Python code, which autometa never does",
                  "grid_search": "Tune reads {'grid_search': ...} as a grid; use type: grid"}


def _float_bounds(spec: dict, at: tuple, log: bool) -> dict:
    low, high = _number(spec, "low", at), _number(spec, "high", at)
    if low > high:
        raise SpaceError(f"low ({low}) is greater than high ({high})", key_path=at + ("low",))
    if log and low <= 0:
        raise SpaceError(f"a log-scale parameter needs low > 0, got {low}", key_path=at + ("low",))
    if not math.isfinite(high - low):
        raise SpaceError(f"the range high - low ({high} - {low}) overflows a float: no value "
                         "could be drawn from it", key_path=at + ("low",))
    return {"low": low, "high": high}


def _q(spec: dict, at: tuple, required: bool, bounds: dict | None) -> float | None:
    if "q" not in spec:
        if required:
            raise SpaceError("missing key 'q' (the quantization step)", key_path=at)
        return None
    q = _number(spec, "q", at)
    if q <= 0:
        raise SpaceError(f"q must be > 0, got {q}", key_path=at + ("q",))
    for bound in ("low", "high"):
        if bounds and bounds.get(bound) is not None:
            k = bounds[bound] / q
            if not abs(k) <= 2 ** 53:  # (NaN and inf too) beyond, multiples are not exact
                raise SpaceError(f"{bound} / q ({bounds[bound]} / {q}) is beyond 2**53 steps, "
                                 "where a float no longer holds every multiple of q exactly",
                                 key_path=at + (bound,))
            if not on_grid(bounds[bound], q):
                raise SpaceError(f"{bound} ({bounds[bound]}) must be a multiple of q ({q}) so that "
                                 "every target rounds the same way", key_path=at + (bound,))
    if bounds and bounds.get("low") is not None and bounds.get("high") is not None \
            and bounds["high"] > bounds["low"] and q > bounds["high"] - bounds["low"]:
        raise SpaceError(f"q ({q}) is larger than the range [{bounds['low']}, "
                         f"{bounds['high']}]: only one value could be drawn (make it a "
                         "constant, or a smaller q)", key_path=at + ("q",))
    return q


def on_grid(value: float, q: float) -> bool:
    """Whether ``value`` is a multiple of ``q`` (to 1e-9 of the step count): a quantized
    bound must be one, so that every library rounds the same way."""
    k = value / q
    return abs(k - round(k)) <= 1e-9 * max(1.0, abs(k))


def _uniform_like(log: bool, quantized: bool):
    def parse(spec: dict, at: tuple) -> dict:
        bounds = _float_bounds(spec, at, log)
        return {"dist": "uniform", "log": log, "q": _q(spec, at, quantized, bounds), **bounds}
    return parse


INT64 = 2 ** 63
"""randint bounds stay inside NumPy's int64, which the searchers and Tune draw integers with."""


def _randint(spec: dict, at: tuple) -> dict:
    low, high = _integer(spec, "low", at), _integer(spec, "high", at)
    for name, value in (("low", low), ("high", high)):
        if not -INT64 <= value < INT64 - 1:
            raise SpaceError(f"{name} must lie in [-2**63, 2**63 - 2] (the searchers and Tune "
                             f"draw integers as NumPy int64), got {value:.4g}",
                             key_path=at + (name,))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError("expected true or false", key_path=at + ("log",))
    if low > high:
        raise SpaceError(f"low ({low}) is greater than high ({high})", key_path=at + ("low",))
    if log and low <= 0:
        raise SpaceError(f"a log-scale parameter needs low > 0, got {low}", key_path=at + ("low",))
    return {"dist": "randint", "low": low, "high": high, "log": log}


_LEAST_NORMAL_MASS = 1e-3  # a draw then fails 10,000 rejections with probability < 5e-5


def normal_mass(mu: float, sigma: float, low: float | None, high: float | None) -> float:
    r""":math:`\Phi((high - \mu)/\sigma) - \Phi((low - \mu)/\sigma)`, the mass a truncation
    keeps (a missing bound: no truncation on that side)."""
    def cdf(x: float | None, default: float) -> float:
        return default if x is None else 0.5 * math.erfc(-(x - mu) / (sigma * math.sqrt(2)))

    return max(0.0, cdf(high, 1.0) - cdf(low, 0.0))


def _normal(spec: dict, at: tuple) -> dict:
    mu_key = "mu" if "mu" in spec else "mean"
    sigma_key = "sigma" if "sigma" in spec else "sd"
    mu, sigma = _number(spec, mu_key, at), _number(spec, sigma_key, at)
    if sigma <= 0:
        raise SpaceError(f"sigma must be > 0, got {sigma}", key_path=at + (sigma_key,))
    low = _number(spec, "low", at) if "low" in spec else None
    high = _number(spec, "high", at) if "high" in spec else None
    if low is not None and high is not None and low >= high:
        raise SpaceError(f"low ({low}) must be below high ({high})", key_path=at + ("low",))
    q = _q(spec, at, False, {"low": low, "high": high})
    kept = normal_mass(mu, sigma, low, high)
    if kept < _LEAST_NORMAL_MASS:
        where = "low" if low is not None and low > mu else "high"
        raise SpaceError(f"the bounds [{low}, {high}] keep {kept:.2g} of the normal's mass "
                         f"(mu {mu}, sigma {sigma}): drawing by rejection would almost never "
                         f"land inside; move mu or widen sigma, or use a uniform",
                         key_path=at + (where,))
    return {"dist": "normal", "mu": mu, "sigma": sigma, "low": low, "high": high, "q": q}


def _choice_or_grid(kind: str):
    def parse(spec: dict, at: tuple) -> dict:
        values = values_of(spec, at)
        if kind == "grid" and any(isinstance(v, dict) for v in values):
            raise SpaceError("grid values must be plain values or lists, not mappings",
                             key_path=at + ("values",))
        for i, v in enumerate(values):
            if isinstance(v, float) and math.isnan(v):
                raise SpaceError("NaN is not a value a trial can take (it equals nothing, "
                                 "itself included)", key_path=at + ("values", i))
        i = first_duplicate(values)
        if i is not None:
            raise SpaceError(f"duplicate value {values[i]!r}", key_path=at + ("values", i))
        return {"dist": kind, "values": tuple(values)}
    return parse


def first_duplicate(values: list) -> int | None:
    """Index of the first value equal to an earlier one (``True`` is not ``1``), in linear time
    for hashable values."""
    seen: set = set()
    unhashable: list = []
    for i, v in enumerate(values):
        kind = "bool" if isinstance(v, bool) else \
            "number" if isinstance(v, (int, float)) else type(v).__name__
        try:
            key = (kind, v)
            hash(key)
        except TypeError:
            if any(_same(v, w) for w in unhashable):
                return i
            unhashable.append(v)
            continue
        if key in seen:
            return i
        seen.add(key)
    return None


def _constant(spec: dict, at: tuple) -> dict:
    if "value" not in spec:
        raise SpaceError("missing key 'value'", key_path=at)
    check_constant(spec["value"], at + ("value",))
    return {"dist": "constant", "value": spec["value"]}


DISTRIBUTION_PARSERS = {
    "uniform": _uniform_like(False, False),
    "loguniform": _uniform_like(True, False),
    "quniform": _uniform_like(False, True),
    "qloguniform": _uniform_like(True, True),
    "randint": _randint,
    "normal": _normal,
    "choice": _choice_or_grid("choice"),
    "grid": _choice_or_grid("grid"),
    "constant": _constant,
}


def check_constant(value: Any, at: tuple) -> None:
    if isinstance(value, float) and math.isnan(value):
        raise SpaceError("NaN is not a value a trial can take (it equals nothing, itself "
                         "included, so no config holding it can be matched or repeated)",
                         key_path=at)
    if isinstance(value, dict):
        for key, sub in value.items():
            if key in RESERVED_NAMES:
                raise SpaceError(f"the key {key!r} is reserved: {RESERVED_NAMES[key]}",
                                 key_path=at + (key,))
            check_constant(sub, at + (key,))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            check_constant(sub, at + (i,))


def _number(spec: dict, key: str, at: tuple) -> float:
    if key not in spec:
        raise SpaceError(f"missing key {key!r}", key_path=at)
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = " (a number in quotes is text: remove the quotes)"
            except ValueError:
                pass
        raise SpaceError(f"expected a number, got {describe_kind(value)}{hint}",
                         key_path=at + (key,))
    if finite_number(value) is None:  # NaN, inf, or an integer too large for a float
        raise SpaceError(f"expected a finite number, got {shown_value(value)}",
                         key_path=at + (key,))
    return float(value)


def _integer(spec: dict, key: str, at: tuple) -> int:
    value = _number(spec, key, at)
    if value != int(value) or not isinstance(spec[key], int):
        raise SpaceError(f"expected an integer, got {spec[key]!r}", key_path=at + (key,))
    return int(value)


def values_of(spec: dict, at: tuple) -> list:
    if "values" not in spec:
        raise SpaceError("missing key 'values' (a non-empty list)", key_path=at)
    values = spec["values"]
    if not isinstance(values, list) or not values:
        got = "an empty list" if values == [] else describe_kind(values)
        raise SpaceError(f"expected a non-empty list, got {got}", key_path=at + ("values",))
    return values


def describe_kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), f"a {type(value).__name__}") + (
        f" ({value!r})" if isinstance(value, (str, int, float)) and not isinstance(value, bool) else "")
