"""Conversion to a hyperopt space (what ``HyperOptSearch`` takes) and back.

The hyperopt space is a dict keyed by autometa parameter keys. Nested choices
become ``hp.choice`` over dicts that carry the branch parameters, so TPE models
each branch on its own. Parameters with a ``condition`` are drawn always and set
to ``None`` when inactive (hyperopt has no conditions on arbitrary parents).

Exactness: ``randint [low, high]`` -> ``hp.randint(low, high + 1)``; a log-scale
``randint`` -> ``hp.loguniform(log low, log(high + 1))`` floored on the way back
(the same law as :meth:`Parameter.sample`). A truncated normal is drawn from
``hp.normal`` and values outside the bounds are rejected by the searcher.
"""

from __future__ import annotations

import math
from typing import Any

from hyperopt import hp

from autometa.space import Parameter, Space
from autometa.space.parameters import _same, to_plain

_BRANCH = "__branch__"


def to_hyperopt(space: Space) -> dict[str, Any]:
    """Return the hyperopt space of ``space`` (constants are left out)."""
    selectors = {c.parent for p in space.parameters for c in p.structural_conditions}
    top: dict[str, Any] = {}
    branch_nodes: dict[tuple[str, str], dict] = {}
    pending = []  # selectors, built once their branches are filled
    for p in space.parameters:
        structural = p.structural_conditions
        node = branch_nodes[(structural[-1].parent, structural[-1].values[0])] if structural else top
        if p.key in selectors:
            options = []
            for i, name in enumerate(p.values):
                option = {_BRANCH: i}
                branch_nodes[(p.key, name)] = option
                options.append(option)
            pending.append((node, p.key, options))
        elif p.dist != "constant":
            node[p.key] = _expr(p)
    for node, key, options in pending:
        node[key] = hp.choice(key, options)
    return top


def _expr(p: Parameter) -> Any:
    if p.dist in ("choice", "grid"):
        return hp.choice(p.key, list(p.values))
    if p.dist == "randint":
        if p.log:
            return hp.loguniform(p.key, math.log(p.low), math.log(p.high + 1))
        return hp.randint(p.key, int(p.low), int(p.high) + 1)
    if p.dist == "uniform":
        if p.q:
            if p.log:
                return hp.qloguniform(p.key, math.log(p.low), math.log(p.high), p.q)
            return hp.quniform(p.key, p.low, p.high, p.q)
        return (hp.loguniform(p.key, math.log(p.low), math.log(p.high)) if p.log
                else hp.uniform(p.key, p.low, p.high))
    if p.dist == "normal":
        return hp.qnormal(p.key, p.mu, p.sigma, p.q) if p.q else hp.normal(p.key, p.mu, p.sigma)
    raise ValueError(f"{p.key}: no hyperopt form for {p.dist}")


def encode_hyperopt(space: Space, flat: dict[str, Any],
                    rng: Any = None) -> dict[str, Any]:
    """Hyperopt's stored values (``misc.vals``) for flat autometa values: the inverse of
    :func:`decode_hyperopt` (a choice is its index; a nested choice's branch its option's).

    Parameters of a branch not taken are left out. An inactive conditional parameter,
    which hyperopt draws always, is drawn with ``rng`` (a NumPy generator).
    """
    structural = {c.parent for p in space.parameters for c in p.structural_conditions}
    out: dict[str, Any] = {}
    for p in space.parameters:
        if p.dist == "constant":
            continue
        if p.key not in flat:
            if p.structural_conditions or rng is None:
                continue  # a branch not taken
            value = p.sample(rng)
        else:
            value = flat[p.key]
        if p.dist in ("choice", "grid") or p.key in structural:
            out[p.key] = next(i for i, v in enumerate(p.values) if _same(v, value))
        else:
            out[p.key] = float(value) if p.dist != "randint" or p.log else int(value)
    return out


def decode_hyperopt(space: Space, native: dict[str, Any]) -> dict[str, Any]:
    """Flat autometa values from a config suggested by ``HyperOptSearch``."""
    flat: dict[str, Any] = {}
    _collect(space, native, flat)
    return flat


def _collect(space: Space, node: dict, flat: dict) -> None:
    for key, value in node.items():
        if key == _BRANCH or key not in space:
            continue
        p = space[key]
        if isinstance(value, dict) and _BRANCH in value:
            flat[key] = p.values[int(value[_BRANCH])]
            _collect(space, value, flat)
        else:
            flat[key] = decode_value(p, value)


def decode_value(p: Parameter, value: Any) -> Any:
    """Cast one hyperopt value to the autometa value."""
    value = to_plain(value)
    if p.dist == "randint":
        x = math.floor(value) if p.log else round(value)
        return int(min(max(x, p.low), p.high))
    if p.dist in ("uniform", "normal"):
        return p.snap(value)
    if p.dist in ("choice", "grid"):
        for v in p.values:
            if _same(v, value):
                return v
    return value

