r"""The one map between a parameter's values and an unconstrained coordinate, with its Jacobian.

================================ ============================== ==========================
parameter                        :math:`x(u)`                    :math:`dx/du`
================================ ============================== ==========================
log-scale (``loguniform``)       :math:`e^u`, u clipped to        :math:`x`
                                 :math:`[\log a, \log b]`
bounded linear (``uniform``,     :math:`a + (b-a)\sigma(u)`       :math:`(x-a)(b-x)/(b-a)`
truncated ``normal``)
unbounded ``normal``             :math:`u`                        :math:`1`
================================ ============================== ==========================

A hypergradient in value units converts to the coordinate by the chain rule
:math:`\partial L/\partial u = (\partial L/\partial x)(dx/du)`. Pure Python (math only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from autometa.space.parameters import Parameter

if TYPE_CHECKING:
    from autometa.space.space import Space

_EDGE = 1e-9  # logit coordinates stay this far (relative) inside the bounds


def kind(param: Parameter) -> str:
    """``"log"``, ``"logit"`` or ``"identity"``."""
    if not is_continuous(param):
        raise ValueError(f"{param.key}: only continuous parameters have an unconstrained coordinate")
    if param.log:
        return "log"
    if param.low is not None and param.high is not None:
        return "logit"
    return "identity"


def is_continuous(param: Parameter) -> bool:
    """Whether ``param`` has an unconstrained coordinate (a continuous number without ``q``)."""
    return param.dist in ("uniform", "normal") and not param.q


def continuous(space: Space, names: Sequence[str]) -> list[Parameter]:
    """The parameters ``names`` of ``space``, each checked to have a coordinate.

    Raises:
        ValueError: a name not in the space, or a parameter that is not continuous.
    """
    unknown = [n for n in names if n not in space]
    if unknown:
        raise ValueError(f"not in the space: {unknown}; its parameters are {space.keys}")
    params = [space[n] for n in names]
    for p in params:
        if not is_continuous(p):
            raise ValueError(f"{p.key}: only a continuous parameter (uniform, loguniform, normal, "
                             f"without q) can be differentiated; {p.key} is {p.dist}"
                             f"{' with q' if p.q else ''}")
    return params


def to_unconstrained(param: Parameter, x: float) -> float:
    k = kind(param)
    if k == "log":
        return math.log(min(max(x, param.low), param.high))
    if k == "logit":
        span = param.high - param.low
        p = (x - param.low) / span
        p = min(max(p, _EDGE), 1 - _EDGE)
        return math.log(p) - math.log1p(-p)
    return float(x)


def from_unconstrained(param: Parameter, u: float) -> float:
    """The value of coordinate ``u``: always inside the parameter's bounds."""
    k = kind(param)
    if k == "log":
        u = min(max(u, math.log(param.low)), math.log(param.high))
        return min(max(math.exp(u), param.low), param.high)
    if k == "logit":
        p = 1.0 / (1.0 + math.exp(-u)) if u >= 0 else math.exp(u) / (1.0 + math.exp(u))
        p = min(max(p, _EDGE), 1 - _EDGE)
        return param.low + (param.high - param.low) * p
    return float(u)


def derivative(param: Parameter, u: float) -> float:
    """:math:`dx/du` at coordinate ``u``."""
    k = kind(param)
    if k == "log":
        return from_unconstrained(param, u)
    if k == "logit":
        x = from_unconstrained(param, u)
        return (x - param.low) * (param.high - x) / (param.high - param.low)
    return 1.0


def clip_unconstrained(param: Parameter, u: float) -> float:
    """Keep a log coordinate inside :math:`[\\log a, \\log b]` (others are unbounded)."""
    if kind(param) == "log":
        return min(max(u, math.log(param.low)), math.log(param.high))
    return u
