r"""irace's sampling model: new candidates drawn around the elites of the last race.

For iteration :math:`j` of an expected :math:`J` (López-Ibáñez et al. 2016, "The irace
package"), each new candidate picks a parent among the :math:`E` elites with probability
:math:`\propto E - r + 1` (r = the elite's rank, 1 = best), then, per active parameter:

* numbers (``uniform``, ``normal``, ``randint``; in log space when ``log``): a normal draw
  around the parent's value truncated to the bounds, with standard deviation
  :math:`\sigma_j = \tfrac12 (\mathrm{high} - \mathrm{low})\, (1/N_{new})^{j/d}` (d = number of
  parameters), so the search narrows as iterations go; quantization is applied after;
* ``choice``/``grid``: the parent's value with probability :math:`w_j = j / (J + 1)`, otherwise
  a uniform draw over the values;
* parameters inactive in the parent, and unbounded ``normal`` ones, are drawn from the space.

Forbidden combinations are redrawn (:meth:`autometa.space.Space.sample_flat`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autometa.space import ConstraintViolation, Space


def parent_weights(n_elites: int) -> np.ndarray:
    """Selection probabilities of the elites, best first: :math:`\\propto E - r + 1`."""
    w = np.arange(n_elites, 0, -1, dtype=float)
    return w / w.sum()


def spread(low: float, high: float, iteration: int, n_new: int, n_params: int) -> float:
    """:math:`\\sigma_j = \\tfrac12 (high - low) (1/N_{new})^{j/d}`."""
    return 0.5 * (high - low) * (1.0 / max(n_new, 2)) ** (iteration / max(n_params, 1))


def sample_around(space: Space, parent: dict[str, Any], rng: np.random.Generator,
                  iteration: int, iterations: int, n_new: int) -> dict[str, Any]:
    """One new candidate (flat values) near ``parent`` (see the module docstring)."""
    params = space.searchable()
    n_params = max(1, len(params))
    keep = iteration / (iterations + 1)
    fixed: dict[str, Any] = {}
    for p in params:
        if p.key not in parent:
            continue
        value = parent[p.key]
        if p.dist in ("choice", "grid"):
            fixed[p.key] = value if rng.random() < keep else p.values[rng.integers(len(p.values))]
        elif p.dist in ("uniform", "randint") or (p.dist == "normal" and p.low is not None
                                                  and p.high is not None):
            fixed[p.key] = _near(p, float(value), rng, iteration, n_new, n_params)
    for _ in range(100):
        try:
            return space.sample_flat(rng, fixed=fixed, max_tries=1)
        except ConstraintViolation:  # the kept values are forbidden together: loosen one
            if not fixed:
                break
            fixed.pop(list(fixed)[rng.integers(len(fixed))])
    return space.sample_flat(rng)


def _near(p: Any, value: float, rng: np.random.Generator, iteration: int, n_new: int,
          n_params: int) -> float | int:
    log = bool(p.log)
    low, high = (math.log(p.low), math.log(p.high)) if log else (p.low, p.high)
    centre = math.log(value) if log else value
    sigma = spread(low, high, iteration, n_new, n_params)
    x = centre
    for _ in range(100):  # truncated normal by rejection
        x = rng.normal(centre, sigma)
        if low <= x <= high:
            break
    x = min(max(x, low), high)
    x = math.exp(x) if log else x
    if p.dist == "randint":
        return int(min(max(round(x), p.low), p.high))
    if p.q:
        x = min(max(round(x / p.q) * p.q, p.low), p.high)
    return float(x)
