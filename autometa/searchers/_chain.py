r"""One descent chain of the hypergradient searcher (pure numpy; no Ray).

State: the best point so far :math:`u^*` (unconstrained coordinates), its objective
:math:`f^*` (to minimize) and gradient :math:`g^*`, the accepted point before it, and a
trust radius :math:`r` (in the :math:`\infty`-norm).

* Scaling (``precondition``, the default): :math:`P = \mathrm{diag}(1/\sqrt{v})` with
  :math:`v` the running mean of squared accepted gradients (Adam's second moment), so that
  every coordinate moves, not only the steepest one, which matters when many
  hyperparameters differ in sensitivity.
* Step: the Barzilai-Borwein step :math:`s = \alpha P g^*`,
  :math:`\alpha = \Delta u^\top P^{-1} \Delta u / \Delta u^\top \Delta g` from the last two
  accepted points (a secant estimate of the inverse curvature in the scaled metric); without
  curvature information (the first step, or :math:`\Delta u^\top \Delta g \le 0`) a scaled
  steepest-descent step of length :math:`r`: :math:`s = r\, P g^* / \|P g^*\|_\infty`. The step
  is shrunk to :math:`\|s\|_\infty \le r`; the next point is :math:`u^* - s`.
* Accepted observation (:math:`f < f^*`, or the first one): it becomes :math:`u^*`, and
  :math:`r \leftarrow \min(\max(r, \gamma_+ \|s\|_\infty), r_{max})`.
* Rejected observation (worse, failed, non-finite or without gradient): back to :math:`u^*`
  with :math:`r \leftarrow \gamma_- \|s\|_\infty` (backtracking along the same direction).
* The chain ends when :math:`r < r_{min}`, when an accepted step was shorter than
  :math:`r_{min}` (converged), after ``max_length`` observations, or, with a held-out metric
  to watch, after ``patience`` accepted steps without a new best of it (the descent then only
  overfits the metric it follows).

It draws on hypergradient descent (Maclaurin et al. 2015; Lorraine et al. 2020), the
Barzilai-Borwein method (1988), and trust-region step control with backtracking on the
observed objective (Conn, Gould & Toint 2000): a noisy or misleading hypergradient costs one
trial, after which the chain retreats to its best point with a shorter step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ChainSettings:
    """Step control of a chain (lengths in unconstrained units, infinity norm)."""

    radius: float = 1.0
    max_radius: float = 4.0
    min_radius: float = 1e-3
    grow: float = 2.0
    shrink: float = 0.3
    max_length: int = 30
    precondition: bool = True
    beta2: float = 0.9
    patience: int = 0


@dataclass
class Chain:
    """A descent chain over the differentiable coordinates, with a fixed discrete context."""

    context: dict[str, Any]
    start: np.ndarray
    settings: ChainSettings
    best_u: np.ndarray | None = None
    best_f: float = np.inf
    best_g: np.ndarray | None = None
    prev_u: np.ndarray | None = None
    prev_g: np.ndarray | None = None
    radius: float = 0.0
    last_step: float = 0.0
    length: int = 0
    pending: str | None = None
    pending_u: np.ndarray | None = None
    history: list[tuple[list[float], float]] = field(default_factory=list)
    converged: bool = False
    second_moment: np.ndarray | None = None
    best_watch: float = np.inf
    stale: int = 0

    def __post_init__(self) -> None:
        self.radius = self.settings.radius

    @property
    def done(self) -> bool:
        patience = self.settings.patience
        return (self.converged or self.radius < self.settings.min_radius
                or self.length >= self.settings.max_length
                or (patience > 0 and self.stale >= patience))

    def watch(self, value: float | None, accepted: bool = True) -> None:
        """Early stopping on a held-out metric (to minimize).

        Counts *accepted* steps without a new best of it: a rejected step (the chain backtracks
        on its own metric) says nothing about overfitting and does not use up patience.
        """
        if value is not None and np.isfinite(value) and value < self.best_watch:
            self.best_watch, self.stale = float(value), 0
        elif accepted:
            self.stale += 1

    def next_point(self) -> np.ndarray:
        """Where to evaluate next."""
        if self.best_u is None:
            return self.start.copy()
        g = self.best_g
        size = float(np.max(np.abs(g))) if g.size else 0.0
        if size == 0.0:
            self.last_step = 0.0
            self.radius = 0.0  # a stationary point: nothing more to do here
            return self.best_u.copy()
        step = None
        if self.settings.precondition:
            # per-coordinate scaling by the RMS of past gradients (Adam's second moment)
            scale = 1.0 / (np.sqrt(self.second_moment) + 1e-12)
            scaled = scale * g
            if self.prev_u is not None:
                du, dg = self.best_u - self.prev_u, self.best_g - self.prev_g
                curvature = float(du @ dg)
                if curvature > 0:                                # BB in the scaled metric
                    step = (float(du @ (du / scale)) / curvature) * scaled
            if step is None:
                step = self.radius * scaled / float(np.max(np.abs(scaled)))
        elif self.prev_u is not None:
            du, dg = self.best_u - self.prev_u, self.best_g - self.prev_g
            curvature = float(du @ dg)
            if curvature > 0:
                step = (float(du @ du) / curvature) * g          # Barzilai-Borwein
        if step is None:
            step = self.radius * g / size                        # steepest descent, length r
        length = float(np.max(np.abs(step)))
        if length > self.radius:
            step = step * (self.radius / length)
            length = self.radius
        self.last_step = length
        return self.best_u - step

    def observe(self, u: np.ndarray, f: float | None, grad: np.ndarray | None) -> bool:
        """Record an evaluation at ``u``; returns whether it was accepted."""
        self.length += 1
        self.history.append((u.tolist(), np.nan if f is None else float(f)))
        ok = f is not None and np.isfinite(f) and grad is not None and bool(np.all(np.isfinite(grad)))
        s = self.settings
        if ok and (self.best_u is None or f < self.best_f):
            if self.best_u is not None:
                self.prev_u, self.prev_g = self.best_u, self.best_g
                self.radius = min(max(self.radius, s.grow * self.last_step), s.max_radius)
                self.converged = self.last_step < s.min_radius
            self.best_u, self.best_f, self.best_g = u.copy(), float(f), grad.copy()
            b2 = s.beta2
            self.second_moment = grad ** 2 if self.second_moment is None else \
                b2 * self.second_moment + (1 - b2) * grad ** 2
            return True
        if self.best_u is None:  # the first point failed: nothing to fall back on
            self.radius = 0.0
            return False
        self.radius = s.shrink * self.last_step
        return False
