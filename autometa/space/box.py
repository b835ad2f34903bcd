r"""The box coordinate a searcher steps in: bounds stay bounds, with the Jacobian.

The unconstrained map (:mod:`autometa.space.unconstrained`) sends a bound to infinity (logit),
which suits an engine's tensors but makes a searcher crawl toward an optimum on the bound.
A searcher instead steps in a coordinate :math:`z` where the box is a box, projects onto it
and keeps the coordinates at a bound in an active set.

================================ ===================================== ================== ==========
parameter                        :math:`x(z)`                          :math:`dx/dz`      z's bounds
================================ ===================================== ================== ==========
log-scale (``loguniform``)       :math:`a\,(b/a)^z`                    :math:`x \log(b/a)` [0, 1]
bounded linear (``uniform``,     :math:`a + (b-a) z`                   :math:`b-a`        [0, 1]
truncated ``normal``)
``normal`` with at most one      :math:`\mu + \sigma z`                :math:`\sigma`     the bound
bound                                                                                     given
================================ ===================================== ================== ==========

One unit of :math:`z` is the whole range of a bounded parameter, so step lengths mean the
same for every parameter. Pure Python (math only).
"""

from __future__ import annotations

import math

from autometa.space.parameters import Parameter
from autometa.space.unconstrained import is_continuous


def _affine(param: Parameter) -> tuple[float, float, bool]:
    """(offset c, width w, log): x = c + w z, or x = exp(c + w z) for a log-scale one."""
    if not is_continuous(param):
        raise ValueError(f"{param.key}: only continuous parameters have a box coordinate")
    if param.log:
        low, high = math.log(param.low), math.log(param.high)
        return low, (high - low) or 1.0, True  # low == high: any width (from_box clips)
    if param.low is not None and param.high is not None:
        return float(param.low), float(param.high - param.low) or 1.0, False
    return float(param.mu), float(param.sigma), False


def bounds(param: Parameter) -> tuple[float, float]:
    """The interval of ``param``'s box coordinate (``-inf``/``inf`` where it has no bound)."""
    c, w, log = _affine(param)
    if log or (param.low is not None and param.high is not None):
        return 0.0, 1.0
    low = -math.inf if param.low is None else (param.low - c) / w
    high = math.inf if param.high is None else (param.high - c) / w
    return low, high


def to_box(param: Parameter, x: float) -> float:
    """The box coordinate of value ``x`` (clipped to the bounds)."""
    c, w, log = _affine(param)
    z = ((math.log(x) if x > 0 else -math.inf) - c) / w if log else (x - c) / w
    low, high = bounds(param)
    return min(max(z, low), high)


def from_box(param: Parameter, z: float) -> float:
    """The value at box coordinate ``z`` (``z`` clipped to the bounds first)."""
    c, w, log = _affine(param)
    low, high = bounds(param)
    if z <= low and param.low is not None:
        return float(param.low)  # a bound exactly, not exp(log(a))
    if z >= high and param.high is not None:
        return float(param.high)
    z = min(max(z, low), high)
    if log:
        return min(max(math.exp(c + w * z), param.low), param.high)
    x = c + w * z
    if param.low is not None:
        x = max(x, param.low)
    if param.high is not None:
        x = min(x, param.high)
    return x


def box_derivative(param: Parameter, z: float) -> float:
    """:math:`dx/dz` at ``z``: a hypergradient in value units times this is d metric / dz."""
    c, w, log = _affine(param)
    return from_box(param, z) * w if log else w


def start(param: Parameter) -> float:
    """A neutral first point: the middle of the box (geometric middle for a log scale), or the
    normal's mean clipped to its bound."""
    low, high = bounds(param)
    if math.isfinite(low) and math.isfinite(high):
        return 0.5 * (low + high)
    return min(max(0.0, low), high)
