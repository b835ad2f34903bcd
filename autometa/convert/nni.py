"""Export to Microsoft NNI's ``search_space.json`` format.

NNI's ``randint`` excludes its upper bound, so autometa's inclusive
``[low, high]`` becomes ``[low, high + 1]``. NNI cannot express conditions
(other than nested choices), forbidden combinations, truncated normals or log-scale
integers: those raise :class:`ValueError`. Differentiability markers are dropped
with a warning.
"""

from __future__ import annotations

import warnings
from typing import Any

from autometa.space import Parameter, Space


def to_nni(space: Space) -> dict[str, Any]:
    """Return the NNI search space (a JSON-able dict) of ``space``."""
    if space.forbidden:
        raise ValueError("NNI search spaces cannot express forbidden combinations")
    return _group(space, [p for p in space.parameters if not p.structural_conditions], ())


def _group(space: Space, params: list[Parameter], prefix: tuple) -> dict[str, Any]:
    out: dict[str, Any] = {}
    selectors = {c.parent for p in space.parameters for c in p.structural_conditions}
    for p in params:
        if [c for c in p.conditions if not c.structural]:
            raise ValueError(f"{p.key}: NNI cannot express conditional parameters "
                             "(only nested choices)")
        rel = p.path[len(prefix):]
        if p.key in selectors:
            rel = rel[:-1]
        if len(rel) != 1:
            raise ValueError(f"{p.key}: NNI has no nested groups; flatten the name")
        out[rel[0]] = _nested(space, p) if p.key in selectors else _param(p)
    return out


def _nested(space: Space, selector: Parameter) -> dict[str, Any]:
    options = []
    prefix = selector.path[:-1]
    for name in selector.values:
        members = [p for p in space.parameters if p.structural_conditions
                   and p.structural_conditions[-1].parent == selector.key
                   and p.structural_conditions[-1].values == (name,)]
        options.append({"_name": name, **_group(space, members, prefix)})
    return {"_type": "choice", "_value": options}


def _param(p: Parameter) -> Any:
    if p.differentiable:
        warnings.warn(f"{p.key}: NNI has no 'differentiable' marker; it is left out", stacklevel=3)
    if p.dist in ("choice", "grid"):
        return {"_type": "choice", "_value": list(p.values)}
    if p.dist == "randint":
        if p.log:
            raise ValueError(f"{p.key}: NNI has no log-scale randint")
        return {"_type": "randint", "_value": [int(p.low), int(p.high) + 1]}
    if p.dist == "uniform":
        name = ("q" if p.q else "") + ("loguniform" if p.log else "uniform")
        return {"_type": name, "_value": [p.low, p.high] + ([p.q] if p.q else [])}
    if p.dist == "normal":
        if p.low is not None or p.high is not None or p.q:
            raise ValueError(f"{p.key}: NNI has no truncated or quantized normal")
        return {"_type": "normal", "_value": [p.mu, p.sigma]}
    if p.dist == "constant":
        return {"_type": "choice", "_value": [p.value]}
    raise ValueError(f"{p.key}: cannot express {p.dist} in NNI")
