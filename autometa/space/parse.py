"""The search-space file schema: turning a parsed document into a :class:`Space`.

The format is documented in ``search_spaces/README.md``. Every error is a
:class:`SpaceError` naming the key path and what is expected.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

from autometa.space.distributions import (
    DISTRIBUTION_PARSERS,
    RESERVED_NAMES,
    check_constant,
    describe_kind,
    values_of,
)
from autometa.space.errors import SpaceError
from autometa.space.parameters import Condition, Parameter
from autometa.space.space import Forbidden, Space

TYPES = ("uniform", "loguniform", "quniform", "qloguniform", "randint", "normal",
         "choice", "grid", "constant")
_COMMON = {"type", "condition", "differentiable", "description"}
_ALLOWED = {
    "uniform": {"low", "high", "q"},
    "loguniform": {"low", "high", "q"},
    "quniform": {"low", "high", "q"},
    "qloguniform": {"low", "high", "q"},
    "randint": {"low", "high", "log"},
    "normal": {"mu", "sigma", "mean", "sd", "low", "high", "q"},
    "choice": {"values", "name_key"},
    "grid": {"values"},
    "constant": {"value"},
}
TOP_LEVEL = ("parameters", "forbidden", "experiment")


def space_from_dict(data: Any, *, file: str | None = None,
                    lines: dict[tuple, int] | None = None) -> Space:
    """Build a :class:`Space` from a parsed document (``{"parameters": ..., ...}``).

    Raises:
        SpaceError: naming ``file``, the key path and line, and what is expected.
    """
    try:
        space = _build(data, file)
    except SpaceError as err:
        raise err.located(file, lines) from None
    space.lines = dict(lines or {})
    return space


def _build(data: Any, file: str | None) -> Space:
    from autometa.space.experiment import parse_experiment  # same package, kept apart

    if not isinstance(data, dict):
        raise SpaceError(f"expected a mapping with a 'parameters' key, got {describe_kind(data)}")
    unknown = [k for k in data if k not in TOP_LEVEL]
    if unknown:
        raise SpaceError(f"unknown top-level key {unknown[0]!r}; expected one of {list(TOP_LEVEL)}",
                         key_path=(unknown[0],))
    if "parameters" not in data:
        raise SpaceError("missing key 'parameters' (a mapping of parameter names to specs)")
    params_doc = data["parameters"]
    if not isinstance(params_doc, dict) or not params_doc:
        raise SpaceError(f"expected a non-empty mapping of parameters, got {describe_kind(params_doc)}",
                         key_path=("parameters",))
    raw: list[tuple[Parameter, tuple, dict | None]] = []
    _parse_group(params_doc, ("parameters",), (), "", (), raw)
    params = _resolve_conditions(raw)
    space = Space(params, source=file)
    space.forbidden = _parse_forbidden(data.get("forbidden"), space)
    if "experiment" in data:
        space.experiment = parse_experiment(data["experiment"], default_name=_stem(file))
    return space


def _parse_group(doc: dict, where: tuple, path: tuple, key_prefix: str,
                 branch_conds: tuple, out: list) -> None:
    for name, spec in doc.items():
        at = where + (name,)
        _check_name(name, at)
        if isinstance(spec, dict) and "type" not in spec:
            if not spec:
                raise SpaceError("empty group: give parameters or remove it", key_path=at)
            _parse_group(spec, at, path + (name,), f"{key_prefix}{name}.", branch_conds, out)
        else:
            _parse_param(name, spec, at, path + (name,), f"{key_prefix}{name}", branch_conds, out)


def _parse_param(name: str, spec: Any, at: tuple, path: tuple, key: str,
                 branch_conds: tuple, out: list) -> None:
    if not isinstance(spec, dict):  # a plain value is a constant
        check_constant(spec, at)
        out.append((Parameter(key, path, "constant", value=spec, conditions=branch_conds), at, None))
        return
    kind = spec["type"]
    if kind not in TYPES:
        raise SpaceError(f"unknown distribution {kind!r}; expected one of {list(TYPES)}",
                         key_path=at + ("type",))
    extra = set(spec) - _COMMON - _ALLOWED[kind]
    if extra:
        bad = sorted(extra, key=str)[0]
        raise SpaceError(f"unknown key {bad!r} for type {kind}; allowed: "
                         f"{sorted(_ALLOWED[kind] | _COMMON)}", key_path=at + (bad,))
    differentiable = spec.get("differentiable", False)
    if not isinstance(differentiable, bool):
        raise SpaceError("expected true or false", key_path=at + ("differentiable",))
    condition = spec.get("condition")
    if condition is not None and (not isinstance(condition, dict) or not condition):
        raise SpaceError("expected a mapping {parent: value or [values]}", key_path=at + ("condition",))

    if kind == "choice" and _is_nested_choice(spec, at):
        _parse_nested_choice(spec, at, path, key, branch_conds, out, condition)
        return
    fields = DISTRIBUTION_PARSERS[kind](spec, at)
    param = Parameter(key, path, differentiable=differentiable, conditions=branch_conds, **fields)
    if differentiable and not (param.dist in ("uniform", "normal") and not param.q):
        raise SpaceError("only continuous parameters (uniform, loguniform, normal without q) can "
                         "be differentiable", key_path=at + ("differentiable",))
    out.append((param, at, condition))


def _parse_nested_choice(spec: dict, at: tuple, path: tuple, key: str, branch_conds: tuple,
                         out: list, condition: dict | None) -> None:
    # ``name_key`` (default ``name``): the key that labels each option, and where the trial
    # finds the chosen label (``config[key][name_key]``); NNI files use ``_name``
    label_key = spec.get("name_key", "name")
    if not isinstance(label_key, str) or not label_key:
        raise SpaceError("expected a non-empty string (the key that names each option)",
                         key_path=at + ("name_key",))
    names = []
    for i, option in enumerate(spec["values"]):
        if label_key not in option:
            raise SpaceError(f"each option of a nested choice needs a {label_key!r}",
                             key_path=at + ("values", i))
        label = option[label_key]
        if not isinstance(label, str) or not label:
            raise SpaceError("expected a non-empty string",
                             key_path=at + ("values", i, label_key))
        if label in names:
            raise SpaceError(f"duplicate option name {label!r}",
                             key_path=at + ("values", i, label_key))
        names.append(label)
    selector = Parameter(key, path + (label_key,), "choice", values=tuple(names),
                         conditions=branch_conds)
    out.append((selector, at, condition))
    for i, option in enumerate(spec["values"]):
        body = {k: v for k, v in option.items() if k != label_key}
        cond = branch_conds + (Condition(key, (option[label_key],), structural=True),)
        _parse_group(body, at + ("values", i), path, f"{key}[{option[label_key]}].", cond, out)


def _is_nested_choice(spec: dict, at: tuple) -> bool:
    values = values_of(spec, at)
    dicts = [isinstance(v, dict) for v in values]
    if any(dicts) and not all(dicts):
        raise SpaceError("mix of mappings and plain values: a nested choice needs every option "
                         "to be a mapping with a 'name'", key_path=at + ("values",))
    if "name_key" in spec and not all(dicts):
        raise SpaceError("name_key is for a nested choice (every option a mapping)",
                         key_path=at + ("name_key",))
    return all(dicts)


# ------------------------------------------------ conditions and forbidden
def _resolve_conditions(raw: list) -> list[Parameter]:
    by_key = {p.key: (p, at) for p, at, _ in raw}
    resolved: dict[str, Parameter] = {}
    for param, at, condition in raw:
        conds = list(param.conditions)
        for parent_key, values in (condition or {}).items():
            where = at + ("condition", parent_key)
            parent = _reference(parent_key, by_key, where, "condition")
            if parent.key == param.key:
                raise SpaceError("a parameter cannot be conditioned on itself", key_path=where)
            if not parent.is_discrete:
                raise SpaceError(
                    f"{parent.key} is a {'quantized ' if parent.q else ''}{parent.dist} "
                    f"parameter: a condition on its values would (almost) never hold, or hold "
                    f"by rounding; condition on a choice, grid, randint or constant parameter",
                    key_path=where)
            conds.append(Condition(parent.key, _allowed_values(parent, values, where)))
        resolved[param.key] = Parameter(**{**param.__dict__, "conditions": tuple(conds)})
    return _topological(resolved, {p.key: at for p, at, _ in raw})


def _topological(params: dict[str, Parameter], where: dict[str, tuple]) -> list[Parameter]:
    order: list[Parameter] = []
    state: dict[str, int] = {}

    def visit(key: str, trail: tuple) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise SpaceError(f"conditions form a cycle: {' -> '.join(trail + (key,))}",
                             key_path=where[key] + ("condition",))
        state[key] = 1
        for cond in params[key].conditions:
            visit(cond.parent, trail + (key,))
        state[key] = 2
        order.append(params[key])

    for key in params:
        visit(key, ())
    return order


def _parse_forbidden(doc: Any, space: Space) -> list[Forbidden]:
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise SpaceError("expected a list of mappings {parameter: value or [values]}",
                         key_path=("forbidden",))
    by_key = {p.key: (p, ()) for p in space.parameters}
    rules = []
    for i, entry in enumerate(doc):
        at = ("forbidden", i)
        if not isinstance(entry, dict) or not entry:
            raise SpaceError("expected a mapping {parameter: value or [values]}", key_path=at)
        clauses = []
        for ref, values in entry.items():
            param = _reference(ref, by_key, at + (ref,), "forbidden clause")
            clauses.append((param.key, _allowed_values(param, values, at + (ref,))))
        rules.append(Forbidden(tuple(clauses)))
    _check_something_is_left(rules, space)
    return rules


_MOST_COMBINATIONS = 200_000


def _check_something_is_left(rules: list[Forbidden], space: Space) -> None:
    """Refuse forbidden clauses that together exclude every configuration. Decided by
    enumerating the discrete parameters the clauses name (an inactive conditional parameter
    counts as a state of its own, so a space is refused only when no state survives); clauses
    on a continuous parameter, or too many combinations, are not decided here."""
    keys = list(dict.fromkeys(key for rule in rules for key, _ in rule.clauses))
    if not keys or not all(space[key].is_discrete for key in keys):
        return
    states = [space[key].candidates() + ((None,) if space[key].conditions else ())
              for key in keys]
    if math.prod(len(s) for s in states) > _MOST_COMBINATIONS:
        return
    for combination in itertools.product(*states):
        flat = dict(zip(keys, combination, strict=True))
        if not any(rule.matches(flat) for rule in rules):
            return
    raise SpaceError(f"the forbidden clauses exclude every combination of {', '.join(keys)}: "
                     "no configuration is left to try", key_path=("forbidden",))


def _reference(ref: Any, by_key: dict, where: tuple, what: str) -> Parameter:
    if ref not in by_key:
        raise SpaceError(f"{what} refers to unknown parameter {ref!r}; known: {sorted(by_key)}",
                         key_path=where)
    return by_key[ref][0]


def _allowed_values(param: Parameter, values: Any, where: tuple) -> tuple:
    values = tuple(values) if isinstance(values, list) else (values,)
    if not values:
        raise SpaceError("expected at least one value", key_path=where)
    for v in values:
        problem = param.problem_with(v)
        if problem:
            raise SpaceError(f"{v!r} is not a value of {param.key}: {problem}", key_path=where)
    return values


# ------------------------------------------------------------- small helpers
def _check_name(name: Any, at: tuple) -> None:
    if not isinstance(name, str) or not name:
        raise SpaceError(f"parameter names must be non-empty strings, got {name!r}", key_path=at)
    if name in RESERVED_NAMES:
        raise SpaceError(f"the name {name!r} is reserved: {RESERVED_NAMES[name]}", key_path=at)
    bad = [c for c in "./[]" if c in name]
    if bad:
        raise SpaceError(f"names cannot contain {bad[0]!r} (dots nest groups: write a mapping)",
                         key_path=at)


def _stem(file: str | None) -> str | None:
    if not file:
        return None
    return os.path.splitext(os.path.basename(file))[0]
