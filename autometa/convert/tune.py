"""Conversion to and from a Ray Tune ``param_space``.

Mapping (autometa -> Tune):

* ``uniform``/``loguniform`` (+ ``q``) -> ``tune.uniform``/``loguniform``/``quniform``/``qloguniform``
* ``randint [low, high]`` (inclusive) -> ``tune.randint(low, high + 1)`` (Tune excludes the
  upper bound); with ``log`` -> ``tune.lograndint(low, high + 1)``
* ``normal`` -> ``tune.randn``/``qrandn``; a truncated normal, which Tune cannot express,
  and conditional parameters become ``tune.sample_from`` of a small picklable sampler
  that :func:`from_tune` recognizes
* ``choice`` -> ``tune.choice``; nested choice -> ``tune.choice`` of dicts with a ``name``
* ``grid`` -> ``tune.grid_search``; constants stay plain values

Forbidden combinations have no Tune form: they are enforced by autometa's searchers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import tune
from ray.tune.search.sample import (
    Categorical,
    Domain,
    Float,
    Function,
    Integer,
    LogUniform,
    Normal,
    Quantized,
    Uniform,
)

from autometa.space import Parameter, Space, space_from_dict
from autometa.space.space import _put


class _SpaceSampler:
    """``tune.sample_from`` callable: draws one autometa parameter (None when inactive)."""

    def __init__(self, param: Parameter, parents: dict[str, tuple[str, ...]]) -> None:
        self.param = param
        self.parents = parents  # parent key -> path in the config

    def __call__(self, spec: Any) -> Any:
        config = getattr(spec, "config", spec)
        flat = {}
        for key, path in self.parents.items():
            node = config
            for part in path:
                node = node[part] if isinstance(node, dict) or hasattr(node, "__getitem__") else None
            flat[key] = node
        for cond in self.param.conditions:
            if not any(flat.get(cond.parent) == v for v in cond.values):
                return None
        return self.param.sample(np.random.default_rng())

    def __repr__(self) -> str:
        return f"autometa({self.param.key})"


def to_tune(space: Space) -> dict[str, Any]:
    """Return a Tune ``param_space`` for ``space``.

    Raises:
        ValueError: for a condition on a parameter inside a nested choice.
    """
    selectors = {c.parent for p in space.parameters for c in p.structural_conditions}
    out: dict[str, Any] = {}
    branch_nodes: dict[tuple[str, str], dict] = {}
    for p in space.parameters:
        structural = p.structural_conditions
        if structural:
            owner = structural[-1]
            node = branch_nodes[(owner.parent, owner.values[0])]
            rel = p.path[len(space[owner.parent].path) - 1:]
        else:
            node, rel = out, p.path
        if p.key in selectors:
            options = []
            for name in p.values:
                option: dict[str, Any] = {p.path[-1]: name}  # its name_key ("name", "_name")
                branch_nodes[(p.key, name)] = option
                options.append(option)
            _put(node, rel[:-1], tune.choice(options))
            continue
        domain = tune_domain(space, p)
        if p.differentiable:
            domain._autometa_differentiable = True  # survives Tune's deepcopy and pickling
        _put(node, rel, domain)
    return out


def tune_domain(space: Space, p: Parameter) -> Any:
    """The Tune form of one parameter (a ``sample_from`` when it has conditions)."""
    user_conditions = [c for c in p.conditions if not c.structural]
    if user_conditions or (p.dist == "normal" and (p.low is not None or p.high is not None)):
        parents = {c.parent: space[c.parent].path for c in user_conditions}
        return tune.sample_from(_SpaceSampler(p, parents))
    if p.dist == "constant":
        return p.value
    if p.dist in ("choice",):
        return tune.choice(list(p.values))
    if p.dist == "grid":
        return tune.grid_search(list(p.values))
    if p.dist == "randint":
        make = tune.lograndint if p.log else tune.randint
        return make(int(p.low), int(p.high) + 1)
    if p.dist == "uniform":
        if p.q:
            return (tune.qloguniform if p.log else tune.quniform)(p.low, p.high, p.q)
        return (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
    if p.dist == "normal":
        return tune.qrandn(p.mu, p.sigma, p.q) if p.q else tune.randn(p.mu, p.sigma)
    raise ValueError(f"{p.key}: no Tune form for {p.dist}")


def from_tune(param_space: dict[str, Any]) -> Space:
    """Build a :class:`Space` from a Tune ``param_space`` (the inverse of :func:`to_tune`).

    Raises:
        ValueError: for what autometa cannot read (``tune.sample_from`` of an arbitrary
            function, ``qrandint``, a nested ``tune.choice`` option without ``name``).
    """
    samplers: list[_SpaceSampler] = []
    doc = _group(param_space, (), samplers)
    space = space_from_dict({"parameters": doc})
    if samplers:  # re-insert the exact parameters carried by the samplers
        by_key = {s.param.key: s.param for s in samplers}
        space = Space([by_key.get(p.key, p) for p in space.parameters])
    return space


def _has_domain(value: Any) -> bool:
    """Whether ``value`` is or holds a Tune distribution (or a grid_search)."""
    if isinstance(value, Domain):
        return True
    if isinstance(value, dict):
        return "grid_search" in value or any(_has_domain(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_domain(v) for v in value)
    return False


def _group(node: dict, at: tuple, samplers: list) -> dict[str, Any]:
    out = {}
    for name, value in node.items():
        out[name] = _spec(value, at + (name,), samplers)
    return out


def _spec(value: Any, at: tuple, samplers: list) -> Any:
    where = ".".join(map(str, at))
    if isinstance(value, dict) and set(value) == {"grid_search"}:
        return {"type": "grid", "values": list(value["grid_search"])}
    if isinstance(value, dict):
        return _group(value, at, samplers)
    if isinstance(value, Function):
        fn = value.func
        if isinstance(fn, _SpaceSampler):
            samplers.append(fn)
            return {"type": "constant", "value": None}  # replaced by fn.param below
        raise ValueError(f"{where}: cannot read tune.sample_from({fn!r}); autometa needs an "
                         "explicit distribution")
    if isinstance(value, Categorical):
        cats = list(value.categories)
        if cats and all(isinstance(c, dict) for c in cats):
            label = next((k for k in ("name", "_name") if all(k in c for c in cats)), None)
            if label is None:
                raise ValueError(f"{where}: each dict option of a nested tune.choice needs a 'name'")
            return {"type": "choice", **({"name_key": label} if label != "name" else {}),
                    "values": [{label: c[label], **_group(
                        {k: v for k, v in c.items() if k != label}, at, samplers)}
                        for c in cats]}
        return {"type": "choice", "values": cats}
    sampler = getattr(value, "sampler", None)
    q = None
    if isinstance(sampler, Quantized):
        q, sampler = sampler.q, sampler.sampler
    if isinstance(value, Integer):
        if q not in (None, 1):
            raise ValueError(f"{where}: tune.qrandint has no autometa form; use a choice or grid")
        if not isinstance(sampler, (Uniform, LogUniform)):
            raise ValueError(f"{where}: unsupported integer sampler {type(sampler).__name__}")
        return {"type": "randint", "low": int(value.lower), "high": int(value.upper) - 1,
                "log": isinstance(sampler, LogUniform)}
    if isinstance(value, Float):
        if isinstance(sampler, Normal):
            spec = {"type": "normal", "mu": sampler.mean, "sigma": sampler.sd}
        elif isinstance(sampler, (Uniform, LogUniform)):
            log = isinstance(sampler, LogUniform)
            spec = {"type": "loguniform" if log else "uniform", "low": value.lower,
                    "high": value.upper}
        else:
            raise ValueError(f"{where}: unsupported float sampler {type(sampler).__name__}")
        if q is not None:
            spec["q"] = q
        if getattr(value, "_autometa_differentiable", False):
            spec["differentiable"] = True
        return spec
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if _has_domain(item):
                raise ValueError(f"{where}[{i}]: a Tune distribution inside a list is not "
                                 "searched by autometa (the trial would receive the "
                                 f"distribution object); give it a key of its own, e.g. "
                                 f"{at[-1]}_{i}")
    return {"type": "constant", "value": value} if isinstance(value, dict) else value

