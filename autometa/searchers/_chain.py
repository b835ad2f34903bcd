r"""One descent chain of the hypergradient searcher (pure numpy; no Ray).

Coordinates: the box coordinate :math:`z \in [l, u]` of each parameter
(:mod:`autometa.space.box`; one unit is a bounded parameter's whole range), to minimize
:math:`f` with the gradient :math:`g = \partial f/\partial z` the trials report.

State: the best point :math:`z^*`, its :math:`f^*` and :math:`g^*`, the last ``memory``
curvature pairs :math:`(s_k, y_k)`, a trust radius :math:`r` (:math:`\infty`-norm) and a
diagonal scaling :math:`P = \mathrm{diag}(1/\sqrt{v})` (:math:`v` the running mean of squared
gradients, Adam's second moment) so that every coordinate moves, not only the steepest.

* **Active set** (projected quasi-Newton, as L-BFGS-B): coordinate :math:`i` is held when it
  sits on a bound and :math:`-g_i` points out of the box
  (:math:`z_i = l_i,\ g_i > 0` or :math:`z_i = u_i,\ g_i < 0`); the rest are *free*, F.
* **Direction** on F: :math:`d = -H g_F` with :math:`H` the L-BFGS inverse Hessian (two-loop
  recursion over the pairs restricted to F) from :math:`H_0 = \tau P`,
  :math:`\tau = s^\top y / y^\top P y` of the newest pair; without pairs
  :math:`d = -r\, P g_F / \|P g_F\|_\infty`. A non-descent :math:`d` (:math:`g^\top d \ge 0`)
  falls back to :math:`-P g_F`.
* **Step**: :math:`d` shrunk to :math:`\|d\|_\infty \le \rho\, r`, where :math:`\rho \in (0,1]`
  is the trust in :math:`g^*` (1 for a hypergradient that met its tolerances, less with its
  relative residual; see :func:`autometa.trial.keys.gradient_trust`); next point :math:`\Pi_{[l,u]}(z^* + d)`,
  so a bound is reached exactly, never crossed.
* **Observation** (:math:`f, g` at :math:`z`): a pair :math:`(z - z^*, g - g^*)` joins the
  memory when both gradients are trusted and :math:`s^\top y > 0` (accepted or not: the
  curvature is real either way). Accepted (:math:`f < f^*`, or the first): it becomes
  :math:`z^*` and :math:`r \leftarrow \min(\max(r, \gamma_+ \|s\|_\infty), r_{max})`.
  Rejected (worse, failed, non-finite, no gradient): back to :math:`z^*` with
  :math:`r \leftarrow \gamma_- \|s\|_\infty` (backtracking along the same direction).
* **End**: the projected gradient is zero (a stationary point, optimum on the bounds
  included), :math:`r < r_{min}`, an accepted step shorter than :math:`r_{min}` (converged),
  ``max_length`` observations, or, with a held-out metric to watch, ``patience`` accepted
  steps without a new best of it (the descent then only overfits the metric it follows).

It draws on hypergradient descent (Maclaurin et al. 2015; Lorraine et al. 2020), L-BFGS-B's
projected active-set steps (Byrd, Lu, Nocedal & Zhu 1995), the L-BFGS two-loop recursion
(Nocedal 1980) and trust-region step control with backtracking on the observed objective
(Conn, Gould & Toint 2000): a noisy or misleading hypergradient costs one trial, after which
the chain retreats to its best point with a shorter step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ChainSettings:
    """Step control of a chain (lengths in box units, infinity norm)."""

    radius: float = 0.1
    max_radius: float = 0.5
    min_radius: float = 1e-4
    grow: float = 2.0
    shrink: float = 0.3
    max_length: int = 30
    precondition: bool = True
    beta2: float = 0.9
    patience: int = 0
    memory: int = 8


def _active(z: np.ndarray, g: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Coordinates held on a bound: there, -g points out of the box."""
    return ((z <= low) & (g > 0)) | ((z >= high) & (g < 0))


def curved(s: np.ndarray, y: np.ndarray) -> bool:
    r"""Whether a pair shows positive curvature, :math:`s^\top y > 10^{-12} \|s\| \|y\|` (the
    condition that keeps the L-BFGS matrix positive definite)."""
    return float(s @ y) > 1e-12 * np.linalg.norm(s) * np.linalg.norm(y)


def lbfgs_direction(g: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]],
                    h0: np.ndarray) -> np.ndarray:
    """:math:`-H g` by the L-BFGS two-loop recursion from the diagonal :math:`H_0`."""
    q, alphas = g.copy(), []
    for s, y in reversed(pairs):                       # newest first
        rho = 1.0 / float(y @ s)
        a = rho * float(s @ q)
        q -= a * y
        alphas.append((rho, a, s, y))
    r = h0 * q
    for rho, a, s, y in reversed(alphas):              # oldest first
        b = rho * float(y @ r)
        r += (a - b) * s
    return -r


@dataclass(eq=False)
class Chain:
    """A descent chain over the differentiable coordinates, with a fixed discrete context."""

    context: dict[str, Any]
    start: np.ndarray
    settings: ChainSettings
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    best_u: np.ndarray | None = None
    best_f: float = np.inf
    best_g: np.ndarray | None = None
    best_trust: float = 1.0
    pairs: list = field(default_factory=list)
    radius: float = 0.0
    last_step: float = 0.0
    last_direction: int = 0
    length: int = 0
    pending: dict = field(default_factory=dict)  # trial id -> (point, step length)
    history: list[tuple[list[float], float]] = field(default_factory=list)
    converged: bool = False
    second_moment: np.ndarray | None = None
    best_watch: float = np.inf
    stale: int = 0
    trials: list[str] = field(default_factory=list)  # trials completed, in completion order

    def __post_init__(self) -> None:
        self.radius = self.settings.radius
        n = len(self.start)
        self.low = np.full(n, -np.inf) if self.low is None else np.asarray(self.low, float)
        self.high = np.full(n, np.inf) if self.high is None else np.asarray(self.high, float)
        self.start = np.clip(np.asarray(self.start, float), self.low, self.high)

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

    def _scaling(self) -> np.ndarray:
        if not self.settings.precondition or self.second_moment is None:
            return np.ones_like(self.best_g)
        root = np.sqrt(self.second_moment)
        return 1.0 / (root + 1e-8 * max(float(root.max()), 1e-300))

    def next_point(self) -> np.ndarray:
        """Where to evaluate next (always inside the bounds).

        With trials of this chain still running, a *probe* from the same best point along the
        next direction in the list (quasi-Newton, diagonally scaled steepest descent, plain
        steepest descent), so that concurrent trials of one chain add curvature pairs along
        different directions instead of repeating a point.
        """
        if self.best_u is None:
            return self.start.copy()
        z, g = self.best_u, self.best_g
        free = ~_active(z, g, self.low, self.high)
        gf = np.where(free, g, 0.0)
        if not np.any(gf):
            self.last_step, self.converged = 0.0, True   # stationary on the box
            return z.copy()
        scale = self._scaling()
        limit = self.radius * self.best_trust
        directions = []
        pairs = [(np.where(free, s, 0.0), np.where(free, y, 0.0)) for s, y in self.pairs]
        pairs = [(s, y) for s, y in pairs if curved(s, y)]
        if pairs:
            s, y = pairs[-1]
            tau = float(s @ y) / float(y @ (scale * y))            # BB scaling of H0 = tau P
            step = np.where(free, lbfgs_direction(gf, pairs, tau * scale), 0.0)
            if float(step @ gf) < 0:                               # a descent direction
                directions.append(step)
        for metric in (scale, np.ones_like(scale)):                # steepest descent, length r
            scaled = metric * gf
            directions.append(-limit * scaled / float(np.max(np.abs(scaled))))
        taken = {k for _, _, base, k in self.pending.values() if base == self.best_f}
        self.last_direction = next((k for k in range(len(directions)) if k not in taken),
                                   len(directions) - 1)
        step = directions[self.last_direction]
        length = float(np.max(np.abs(step)))
        if length > limit:
            step = step * (limit / length)
        target = np.clip(z + step, self.low, self.high)
        self.last_step = float(np.max(np.abs(target - z)))
        return target

    def propose(self, trial_id: str) -> np.ndarray:
        """:meth:`next_point`, recorded as ``trial_id``'s pending evaluation."""
        z = self.next_point()
        step = self.last_step if self.best_u is not None else 0.0
        self.pending[trial_id] = (z, step, self.best_f, self.last_direction)
        return z

    def complete(self, trial_id: str, z: np.ndarray | None, f: float | None,
                 grad: np.ndarray | None, trust: float = 1.0) -> bool:
        """``trial_id``'s result (``z``: the point it reports having used, None: as proposed)."""
        proposed, step, base, _ = self.pending.pop(trial_id)
        self.trials.append(trial_id)
        # a probe from a point that is no longer the best: its failure says nothing of the radius
        return self.observe(proposed if z is None else z, f, grad, trust, step,
                            shrink=base == self.best_f)

    def cancel(self, trial_id: str) -> None:
        """``trial_id`` will not run (its point broke the space): a shorter step next."""
        self.pending.pop(trial_id, None)
        self.radius *= self.settings.shrink

    def observe(self, u: np.ndarray, f: float | None, grad: np.ndarray | None,
                trust: float = 1.0, step: float | None = None, shrink: bool = True) -> bool:
        """Record an evaluation at ``u`` (``step``: the length of the step that proposed it,
        default the last one; ``shrink``: a rejection shortens the radius); returns whether it
        was accepted."""
        step = self.last_step if step is None else step
        self.length += 1
        self.history.append((u.tolist(), np.nan if f is None else float(f)))
        ok = f is not None and np.isfinite(f) and grad is not None and bool(np.all(np.isfinite(grad)))
        s = self.settings
        if ok and self.best_u is not None and trust >= 1.0 and self.best_trust >= 1.0:
            du, dg = u - self.best_u, grad - self.best_g
            if s.memory > 0 and curved(du, dg):
                self.pairs = (self.pairs + [(du, dg)])[-s.memory:]
        if ok and (self.best_u is None or f < self.best_f):
            if self.best_u is not None:
                self.radius = min(max(self.radius, s.grow * step), s.max_radius)
                self.converged = step < s.min_radius
            self.best_u, self.best_f, self.best_g = u.copy(), float(f), grad.copy()
            self.best_trust = float(trust)
            b2 = s.beta2
            self.second_moment = grad ** 2 if self.second_moment is None else \
                b2 * self.second_moment + (1 - b2) * grad ** 2
            return True
        if self.best_u is None:  # the first point failed: nothing to fall back on
            self.radius = 0.0
            return False
        if shrink:
            self.radius = min(self.radius, s.shrink * step)
        return False
