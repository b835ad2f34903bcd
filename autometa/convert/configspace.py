"""Conversion to and from a ``ConfigSpace.ConfigurationSpace`` (ConfigSpace 1.x API).

* ``uniform``/``loguniform`` -> ``Float``; ``randint`` -> ``Integer`` (both inclusive);
* quantized floats -> ``Integer`` over the lattice index ``k`` (value ``k * q``), since
  ConfigSpace 1.x has no ``q``; the step is kept in the hyperparameter's ``meta``;
* ``normal`` -> ``Float`` with ``Normal`` (ConfigSpace needs ``low`` and ``high``);
* ``choice``/``grid`` -> ``Categorical`` (choices that are not all strings or all
  numbers are stored by index);
* conditions -> ``EqualsCondition``/``InCondition`` (``AndConjunction`` for several);
* forbidden -> ``ForbiddenEqualsClause``/``ForbiddenInClause`` in ``ForbiddenAndConjunction``.

Each hyperparameter's ``meta`` holds what ConfigSpace cannot (config path, nested-
choice structure, ``differentiable``), so :func:`from_configspace` gives back the
same space.
"""

from __future__ import annotations

import io
from typing import Any

from ConfigSpace import (
    AndConjunction,
    Categorical,
    CategoricalHyperparameter,
    ConfigurationSpace,
    Constant,
    EqualsCondition,
    Float,
    ForbiddenAndConjunction,
    ForbiddenEqualsClause,
    ForbiddenInClause,
    InCondition,
    Integer,
    Normal,
    NormalFloatHyperparameter,
    NotEqualsCondition,
    OrdinalHyperparameter,
    UniformFloatHyperparameter,
)
from ConfigSpace.hyperparameters import (
    BetaFloatHyperparameter,
    BetaIntegerHyperparameter,
    IntegerHyperparameter,
    NormalIntegerHyperparameter,
)

from autometa.space import Condition, Parameter, Space
from autometa.space.parameters import _same, to_plain
from autometa.space.space import Forbidden

_META = "autometa"


def to_configspace(space: Space, seed: int | None = None) -> ConfigurationSpace:
    """Return the ``ConfigurationSpace`` of ``space`` (scalar constants become ``Constant``).

    ConfigSpace needs its default configuration to be allowed: where the forbidden clauses
    exclude the default values (the first choice of each), the first allowed combination of
    the parameters they name becomes the default.

    Raises:
        ValueError: for a normal parameter without both ``low`` and ``high``.
    """
    cs = _build(space, seed, {})
    if space.forbidden:
        default = decode_configspace(space, dict(cs.get_default_configuration()))
        if space.is_forbidden(default):
            allowed = _allowed_default(space, default)
            if allowed is not None:
                cs = _build(space, seed, {k: _encode(space[k], v) for k, v in allowed.items()})
    cs.add(_forbiddens(space, {hp.name: hp for hp in cs.values()}))
    return cs


def _build(space: Space, seed: int | None, defaults: dict[str, Any]) -> ConfigurationSpace:
    """The hyperparameters and conditions of ``space`` (``defaults``: native default values)."""
    cs = ConfigurationSpace(seed=seed)
    hps = {}
    for order, p in enumerate(space.parameters):
        if p.dist == "constant" and not _is_scalar(p.value):
            continue
        hp = _hyperparameter(p, defaults.get(p.key))
        hp.meta[_META]["order"] = order  # ConfigSpace sorts by name; keep the file's order
        hps[p.key] = hp
    cs.add(list(hps.values()))
    conditions = []
    for p in space.parameters:
        if p.key not in hps or not p.conditions:
            continue
        parts = [_condition(hps[p.key], hps[c.parent], space[c.parent], c) for c in p.conditions]
        conditions.append(parts[0] if len(parts) == 1 else AndConjunction(*parts))
    cs.add(conditions)
    return cs


def _forbiddens(space: Space, hps: dict[str, Any]) -> list:
    forbiddens = []
    for rule in space.forbidden:
        clauses = []
        for key, values in rule.clauses:
            native = [_encode(space[key], v) for v in values]
            clauses.append(ForbiddenEqualsClause(hps[key], native[0]) if len(native) == 1
                           else ForbiddenInClause(hps[key], native))
        forbiddens.append(clauses[0] if len(clauses) == 1 else ForbiddenAndConjunction(*clauses))
    return forbiddens


_MOST_DEFAULTS = 200_000


def _allowed_default(space: Space, default: dict[str, Any]) -> dict[str, Any] | None:
    """The values, for the discrete parameters the forbidden clauses name, of the first allowed
    combination (each parameter's default tried first); None when none is found in
    :data:`_MOST_DEFAULTS` tries (ConfigSpace then names the clause)."""
    import itertools

    keys = [k for k in dict.fromkeys(key for rule in space.forbidden for key, _ in rule.clauses)
            if k in default and space[k].is_discrete and space[k].dist != "constant"]
    options = [sorted(space[k].candidates(), key=lambda v, k=k: not _same(v, default[k]))
               for k in keys]
    for combination in itertools.islice(itertools.product(*options), _MOST_DEFAULTS):
        flat = {**default, **dict(zip(keys, combination, strict=True))}
        active = {k: v for k, v in flat.items() if space.is_active(space[k], flat)}
        if not space.is_forbidden(active):
            return dict(zip(keys, combination, strict=True))
    return None


def to_configspace_json(space: Space) -> str:
    """ConfigSpace's own JSON serialization of :func:`to_configspace`."""
    buffer = io.StringIO()
    to_configspace(space).to_json(buffer, indent=2)
    return buffer.getvalue()


def _meta(p: Parameter, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"path": list(p.path)}
    if p.differentiable:
        info["differentiable"] = True
    structural = [c.parent for c in p.conditions if c.structural]
    if structural:
        info["structural"] = structural
    info.update(extra)
    return {_META: info}


def _hyperparameter(p: Parameter, default: Any = None) -> Any:
    given = {} if default is None else {"default": default}
    if p.dist == "constant":
        return Constant(p.key, p.value, meta=_meta(p))
    if p.dist in ("choice", "grid"):
        by_index = not _uniform_types(p.values)
        choices = [str(i) for i in range(len(p.values))] if by_index else list(p.values)
        extra = {"dist": p.dist}
        if by_index:
            extra["values"] = list(p.values)
        return Categorical(p.key, choices, meta=_meta(p, **extra), **given)
    if p.dist == "randint":
        return Integer(p.key, (int(p.low), int(p.high)), log=p.log, meta=_meta(p), **given)
    if p.dist == "uniform":
        if p.q:
            bounds = (round(p.low / p.q), round(p.high / p.q))
            return Integer(p.key, bounds, log=p.log, meta=_meta(p, q=p.q, dist="uniform"))
        return Float(p.key, (p.low, p.high), log=p.log, meta=_meta(p))
    if p.dist == "normal":
        if p.low is None or p.high is None:
            raise ValueError(f"{p.key}: ConfigSpace (and so bohb) needs both 'low' and 'high' "
                             "for a normal parameter; add bounds to the file")
        if p.q:
            return Integer(p.key, (round(p.low / p.q), round(p.high / p.q)),
                           distribution=Normal(p.mu / p.q, p.sigma / p.q),
                           meta=_meta(p, q=p.q, dist="normal", mu=p.mu, sigma=p.sigma))
        return Float(p.key, (p.low, p.high), distribution=Normal(p.mu, p.sigma), meta=_meta(p))
    raise ValueError(f"{p.key}: no ConfigSpace form for {p.dist}")


def _condition(child: Any, parent_hp: Any, parent: Parameter, cond: Condition) -> Any:
    values = [_encode(parent, v) for v in cond.values]
    if len(values) == 1:
        return EqualsCondition(child, parent_hp, values[0])
    return InCondition(child, parent_hp, values)


def _encode(p: Parameter, value: Any) -> Any:
    if p.dist in ("choice", "grid") and not _uniform_types(p.values):
        return str(next(i for i, v in enumerate(p.values) if _same(v, value)))
    if p.dist in ("uniform", "normal") and p.q:
        return round(value / p.q)
    return value


def decode_configspace(space: Space, native: dict[str, Any]) -> dict[str, Any]:
    """Flat autometa values from a ConfigSpace configuration (a dict of its values)."""
    flat = {}
    for key, value in dict(native).items():
        if key not in space:
            continue
        p = space[key]
        value = to_plain(value)
        if p.dist == "constant":
            continue
        if p.dist in ("choice", "grid"):
            if not _uniform_types(p.values):
                value = p.values[int(value)]
            else:
                value = next((v for v in p.values if _same(v, value) or v == value), value)
        elif p.dist in ("uniform", "normal"):
            value = p.snap(value * p.q) if p.q else p.snap(value)
        elif p.dist == "randint":
            value = int(round(value))
        flat[key] = value
    return flat


def from_configspace(cs: ConfigurationSpace, *, lossy: bool = False) -> Space:
    """Build a :class:`Space` from a ``ConfigurationSpace``.

    Spaces written by :func:`to_configspace` come back exactly; others are read as
    flat parameters named by their ConfigSpace names. What an autometa space cannot hold
    (categorical weights, a log-scale normal, a beta distribution, a normal or beta
    distribution over integers, an ordinal's order, a default other than the one ConfigSpace
    gives the converted parameter) is an error naming each hyperparameter and what it would
    lose; ``lossy=True`` converts anyway (weights and distributions read as uniform, ordinals
    as choices, defaults dropped) and warns with the same list.

    Raises:
        ValueError: for OR-conditions, numeric conditions or other clauses autometa lacks, and
            (unless ``lossy``) for the losses above.
    """
    params = []
    conds: dict[str, list[Condition]] = {}
    for cond in cs.conditions:
        parts = cond.components if isinstance(cond, AndConjunction) else [cond]
        for part in parts:
            if isinstance(part, EqualsCondition):
                values = (part.value,)
            elif isinstance(part, InCondition):
                values = tuple(part.values)
            elif isinstance(part, NotEqualsCondition) and isinstance(
                    part.parent, (CategoricalHyperparameter, OrdinalHyperparameter)):
                # "parent != v" over a finite parent is "parent in (every other value)"
                choices = getattr(part.parent, "choices", None) or part.parent.sequence
                values = tuple(c for c in choices if c != part.value)
            else:
                raise ValueError(f"{part}: autometa supports only equals, in and (on a "
                                 "categorical parent) not-equals conditions joined by AND")
            conds.setdefault(part.child.name, []).append((part.parent.name, values))
    hps = {hp.name: hp for hp in cs.values()}
    losses = []
    for hp in sorted(cs.values(), key=lambda h: (h.meta or {}).get(_META, {}).get("order", 0)):
        p = _parameter(hp)
        losses += [f"{hp.name}: {what}" for what in _losses(hp, p)]
        info = (hp.meta or {}).get(_META, {})
        structural = set(info.get("structural", []))
        c = tuple(Condition(parent, tuple(_decode_value(hps[parent], v) for v in values),
                            structural=parent in structural)
                  for parent, values in conds.get(hp.name, []))
        params.append(Parameter(**{**p.__dict__, "conditions": c}))
    if losses and not lossy:
        raise ValueError("ConfigSpace features an autometa space cannot hold: "
                         + "; ".join(losses) + " (from_configspace(..., lossy=True) converts "
                         "without them; default_config(cs, space) gives the default "
                         "configuration, to run first as points_to_evaluate)")
    if losses:
        import warnings

        warnings.warn("from_configspace: not kept: " + "; ".join(losses), stacklevel=2)
    forbidden = [_forbidden(f, hps) for f in cs.forbidden_clauses]
    from autometa.space.parse import _topological

    ordered = _topological({p.key: p for p in params}, {p.key: () for p in params})
    return Space(ordered, forbidden=forbidden)


def default_config(cs: ConfigurationSpace, space: Space) -> dict[str, Any]:
    """ConfigSpace's default configuration of ``cs`` as a config of ``space`` (its
    :func:`from_configspace` conversion), to pass as ``points_to_evaluate``: autometa spaces
    hold no defaults, so this is how a converted file's default is still tried first."""
    return space.assemble(decode_configspace(space, dict(cs.get_default_configuration())))


def _losses(hp: Any, p: Parameter) -> list[str]:
    """What converting ``hp`` to ``p`` loses (empty: nothing; a hyperparameter that
    :func:`to_configspace` wrote comes back whole)."""
    if _META in (hp.meta or {}):
        return []
    out = []
    weights = getattr(hp, "weights", None)
    if isinstance(hp, CategoricalHyperparameter) and weights is not None and \
            len({float(w) for w in weights}) > 1:
        out.append(f"weights {[float(w) for w in weights]} (choices are drawn uniformly)")
    if isinstance(hp, NormalFloatHyperparameter) and hp.log:
        out.append("a normal distribution on the log scale")
    if isinstance(hp, (BetaFloatHyperparameter, BetaIntegerHyperparameter)):
        out.append(f"a beta({hp.alpha:g}, {hp.beta:g}) distribution (read as uniform)")
    if isinstance(hp, NormalIntegerHyperparameter):
        out.append(f"a normal({hp.mu:g}, {hp.sigma:g}) distribution over integers (read as "
                   "uniform)")
    if isinstance(hp, OrdinalHyperparameter):
        out.append("the order of an ordinal (read as a choice)")
    if not out and not isinstance(hp, Constant):
        try:
            kept = _hyperparameter(p).default_value
        except ValueError:
            kept = None
        if not _same(to_plain(kept), to_plain(hp.default_value)):
            out.append(f"its default {to_plain(hp.default_value)!r} (autometa spaces have no "
                       f"defaults; converted, the default is {to_plain(kept)!r})")
    return out


def _parameter(hp: Any) -> Parameter:
    info = (hp.meta or {}).get(_META, {})
    path = tuple(info.get("path", hp.name.split(".")))
    common = {"key": hp.name, "path": path, "differentiable": info.get("differentiable", False)}
    if isinstance(hp, Constant):
        return Parameter(dist="constant", value=to_plain(hp.value), **common)
    if isinstance(hp, CategoricalHyperparameter):
        values = info.get("values") or [to_plain(v) for v in hp.choices]
        return Parameter(dist=info.get("dist", "choice"), values=tuple(values), **common)
    if isinstance(hp, OrdinalHyperparameter):
        return Parameter(dist="choice", values=tuple(to_plain(v) for v in hp.sequence), **common)
    if "q" in info:
        q = info["q"]
        lo, hi = float(f"{hp.lower * q:.12g}"), float(f"{hp.upper * q:.12g}")
        if info.get("dist") == "normal":
            return Parameter(dist="normal", low=lo, high=hi, q=q, mu=info["mu"],
                             sigma=info["sigma"], **common)
        return Parameter(dist="uniform", low=lo, high=hi, q=q, log=bool(hp.log), **common)
    if isinstance(hp, IntegerHyperparameter):
        return Parameter(dist="randint", low=int(hp.lower), high=int(hp.upper), log=bool(hp.log),
                         **common)
    if isinstance(hp, NormalFloatHyperparameter):
        return Parameter(dist="normal", mu=float(hp.mu), sigma=float(hp.sigma),
                         low=float(hp.lower), high=float(hp.upper), **common)
    if isinstance(hp, (UniformFloatHyperparameter, BetaFloatHyperparameter)):
        return Parameter(dist="uniform", low=float(hp.lower), high=float(hp.upper),
                         log=bool(hp.log), **common)
    raise ValueError(f"{hp.name}: unsupported ConfigSpace hyperparameter {type(hp).__name__}")


def _decode_value(hp: Any, value: Any) -> Any:
    p = _parameter(hp)
    return decode_configspace(Space([p]), {hp.name: value}).get(hp.name, to_plain(value))


def _forbidden(clause: Any, hps: dict) -> Forbidden:
    parts = clause.components if isinstance(clause, ForbiddenAndConjunction) else [clause]
    out = []
    for part in parts:
        if isinstance(part, ForbiddenEqualsClause):
            values = (part.value,)
        elif isinstance(part, ForbiddenInClause):
            values = tuple(part.values)
        else:
            raise ValueError(f"{part}: autometa supports only equals/in forbidden clauses")
        hp = part.hyperparameter
        out.append((hp.name, tuple(_decode_value(hps[hp.name], v) for v in values)))
    return Forbidden(tuple(out))


def _uniform_types(values: tuple) -> bool:
    if all(isinstance(v, str) for v in values):
        return True
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and \
        len({type(v) for v in values}) == 1


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def encode_configspace(space: Space, flat: dict[str, Any]) -> dict[str, Any]:
    """ConfigSpace values of flat autometa values (inverse of :func:`decode_configspace`)."""
    out = {key: _encode(space[key], value) for key, value in flat.items()
           if key in space and space[key].dist != "constant"}
    for p in space.parameters:  # scalar constants are Constant hyperparameters there
        if p.dist == "constant" and _is_scalar(p.value) and space.is_active(p, flat):
            out[p.key] = p.value
    return out
