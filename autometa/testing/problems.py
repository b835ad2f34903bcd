r"""Test problems with exact hypergradients and a known optimum, for gradient-based searchers.

:class:`BoxQuadratic` is a convex quadratic in the parameters' natural coordinates
(:math:`\log x` for a log-scale parameter, :math:`x` for a linear one),
:math:`f(x) = \tfrac12 (c(x) - c^\circ)^\top H (c(x) - c^\circ)`, with a random positive
definite :math:`H` and centre :math:`c^\circ`; with ``on_bound`` two centre coordinates lie
outside the box, so the constrained optimum sits on its bounds there. The optimum over the
box is computed by L-BFGS-B (scipy). Results carry the exact derivatives in value units
(:math:`\partial f/\partial x = (H(c - c^\circ))_i / x` for a log-scale one) through the
public :func:`autometa.trial.keys.hypergrad_metrics`. Pure numpy/scipy; no Ray.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autometa.trial.keys import hypergrad_metrics


class BoxQuadratic:
    """A seeded quadratic over ``n_log`` log-scale and ``n_linear`` linear parameters.

    Args:
        seed: Seed of the centre and the curvature.
        n_log, n_linear: How many parameters of each kind (log ones in [1e-4, 10], linear
            ones in [-1, 1]), named ``l0, l1, ...`` and ``b0, b1, ...``.
        on_bound: Put the optimum on the box for ``l0`` (lower bound) and ``b1`` (upper).

    Example:
        >>> problem = BoxQuadratic(0)
        >>> len(problem.keys), problem(problem.optimum)["loss"] - problem.best < 1e-9
        (8, True)
        >>> problem(problem.optimum)["loss"] - problem.best < 1e-9
        True
    """

    def __init__(self, seed: int, n_log: int = 4, n_linear: int = 4,
                 on_bound: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.bounds: dict[str, tuple[float, float, bool]] = {}
        for i in range(n_log):
            self.bounds[f"l{i}"] = (1e-4, 10.0, True)
        for i in range(n_linear):
            self.bounds[f"b{i}"] = (-1.0, 1.0, False)
        self.keys = list(self.bounds)
        lo, hi = self._coordinate_box()
        centre = rng.uniform(lo + 0.2 * (hi - lo), hi - 0.2 * (hi - lo))
        if on_bound:
            if "l0" in self.bounds:
                centre[self.keys.index("l0")] = lo[self.keys.index("l0")] - 3.0
            if "b1" in self.bounds:
                centre[self.keys.index("b1")] = hi[self.keys.index("b1")] + 0.7
        n = len(self.keys)
        a = rng.normal(size=(n, n))
        self.hessian = a @ a.T / n + 0.5 * np.eye(n)
        self.centre = centre
        self.optimum, self.best = self._solve(lo, hi)

    def _coordinate_box(self) -> tuple[np.ndarray, np.ndarray]:
        lo = [math.log(a) if log else a for a, _, log in self.bounds.values()]
        hi = [math.log(b) if log else b for _, b, log in self.bounds.values()]
        return np.array(lo), np.array(hi)

    def _coordinates(self, config: dict[str, Any]) -> np.ndarray:
        return np.array([math.log(config[k]) if self.bounds[k][2] else config[k]
                         for k in self.keys])

    def _solve(self, lo: np.ndarray, hi: np.ndarray) -> tuple[dict[str, float], float]:
        from scipy.optimize import minimize

        h, c0 = self.hessian, self.centre
        out = minimize(lambda c: 0.5 * (c - c0) @ h @ (c - c0), np.clip(c0, lo, hi),
                       jac=lambda c: h @ (c - c0), bounds=list(zip(lo, hi, strict=True)),
                       method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12})
        values = {k: (math.exp(c) if self.bounds[k][2] else float(c))
                  for k, c in zip(self.keys, out.x, strict=True)}
        return values, float(out.fun)

    def tune_space(self) -> dict[str, Any]:
        """The plain Tune ``param_space`` (``tune.loguniform``/``tune.uniform``; no marker)."""
        from ray import tune

        return {k: (tune.loguniform(a, b) if log else tune.uniform(a, b))
                for k, (a, b, log) in self.bounds.items()}

    def __call__(self, config: dict[str, Any]) -> dict[str, float]:
        """The result of one trial: ``loss`` and its exact hypergradients."""
        d = self._coordinates(config) - self.centre
        g = self.hessian @ d                               # df/dc
        grads = {k: float(g[i] / config[k]) if self.bounds[k][2] else float(g[i])  # df/dx
                 for i, k in enumerate(self.keys)}
        return {"loss": float(0.5 * d @ self.hessian @ d), **hypergrad_metrics(grads)}

    def trainable(self, config: dict[str, Any]) -> None:
        """A Tune function trainable reporting :meth:`__call__` once."""
        from ray import tune

        tune.report(self(config))
