"""Writing a :class:`Space` back to autometa's own YAML/JSON format."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import yaml

from autometa.space import Parameter, Space


def to_document(space: Space, *, with_experiment: bool = True) -> dict[str, Any]:
    """The document (``{"parameters": ..., "forbidden": ..., "experiment": ...}``) of a space.

    Loading the result with :func:`autometa.space.space_from_dict` gives back an
    equal space.
    """
    params: dict[str, Any] = {}
    branches = {}  # selector key -> {branch name: node of that branch}
    for p in space.parameters:
        structural = p.structural_conditions
        if structural:
            owner = structural[-1]
            node = branches[owner.parent][owner.values[0]]
            rel = p.path[len(space[owner.parent].path) - 1:]
        else:
            node, rel = params, p.path
        spec = _spec(p, space)
        if p.key in _selectors(space):
            label = p.path[-1]  # the selector sits at <choice>.<name_key>
            spec = {"type": "choice", **({"name_key": label} if label != "name" else {}),
                    "values": [], **({"condition": spec["condition"]}
                                     if "condition" in spec else {})}
            branches[p.key] = {}
            for name in p.values:
                option: dict[str, Any] = {label: name}
                spec["values"].append(option)
                branches[p.key][name] = option
            rel = rel[:-1]
        _put(node, rel, spec)
    doc: dict[str, Any] = {"parameters": params}
    if space.forbidden:
        doc["forbidden"] = [{k: list(v) if len(v) > 1 else v[0] for k, v in rule.clauses}
                            for rule in space.forbidden]
    if with_experiment and space.experiment is not None:
        doc["experiment"] = _experiment(space.experiment)
    return doc


def dump_document(space: Space, fmt: str = "yaml") -> str:
    """Serialize :func:`to_document` as ``yaml`` or ``json`` text."""
    doc = to_document(space)
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def _selectors(space: Space) -> set[str]:
    return {c.parent for p in space.parameters for c in p.structural_conditions}


def _spec(p: Parameter, space: Space) -> Any:
    user_conditions = [c for c in p.conditions if not c.structural]
    if p.dist == "constant" and not user_conditions and not isinstance(p.value, dict):
        return p.value
    if p.dist == "constant":
        spec: dict[str, Any] = {"type": "constant", "value": p.value}
    elif p.dist == "uniform":
        name = ("q" if p.q else "") + ("loguniform" if p.log else "uniform")
        spec = {"type": name, "low": p.low, "high": p.high}
        if p.q:
            spec["q"] = p.q
    elif p.dist == "randint":
        spec = {"type": "randint", "low": int(p.low), "high": int(p.high)}
        if p.log:
            spec["log"] = True
    elif p.dist == "normal":
        spec = {"type": "normal", "mu": p.mu, "sigma": p.sigma}
        spec.update({k: getattr(p, k) for k in ("low", "high", "q") if getattr(p, k) is not None})
    else:
        spec = {"type": p.dist, "values": list(p.values)}
    if p.differentiable:
        spec["differentiable"] = True
    if user_conditions:
        spec["condition"] = {c.parent: list(c.values) if len(c.values) > 1 else c.values[0]
                             for c in user_conditions}
    return spec


def _put(node: dict, path: tuple, value: Any) -> None:
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _experiment(exp: Any) -> dict[str, Any]:
    out = asdict(exp)
    for key in ("searcher", "scheduler"):
        comp = out.get(key)
        if comp is not None:
            out[key] = {"name": comp["name"], **comp["options"]} if comp["options"] else comp["name"]
    return {k: v for k, v in out.items() if v is not None}
