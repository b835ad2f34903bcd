"""Parameter importance: each parameter's main effect on the metric, from a random forest.

A random forest (scikit-learn) is fitted to the trials' configs and metric; parameter j's
importance is the variance of its partial dependence over the observed configs, as a share of
the variance of the forest's predictions:

    f_j(v) = mean_i f(x_i with x_ij := v)           (partial dependence, Friedman 2001)
    share_j = Var_i f_j(x_ij) / Var_i f(x_i)

This is fANOVA's first-order term (Hutter, Hoos and Leyton-Brown 2014) with the observed
configs as the measure instead of the uniform one over the space: under random search the two
agree and the shares sum to at most about 1 (the rest is interactions); under a searcher that
concentrated its trials they describe the region it searched. The forest's out-of-bag R^2
says how much of the metric it explains at all; with few trials or a noisy metric it is low
and the shares are noise (the figure says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autometa.launch.figures import as_cell
from autometa.trial.keys import finite_number

MIN_TRIALS = 8
"""Fewer trials with a finite metric than this: no importance (too few to fit a forest)."""
EXPLAINED_R2 = 0.3
"""Out-of-bag R^2 below this: the forest explains little and the shares are flagged."""
GRID = 16
"""Most values a parameter's partial dependence is evaluated at (quantiles of its values)."""


@dataclass
class Importance:
    """``shares``: parameter -> main-effect share; ``r2``: the forest's out-of-bag R^2;
    ``trials``: how many trials it was fitted to; ``explained``: r2 >= EXPLAINED_R2."""

    shares: dict[str, float]
    r2: float | None
    trials: int

    @property
    def explained(self) -> bool:
        return self.r2 is not None and self.r2 >= EXPLAINED_R2


def encode(column: list[Any]) -> np.ndarray | None:
    """A parameter's values as numbers for the forest: finite numbers as they are, anything
    else (a choice's labels, lists) as the index of its text among the sorted texts; None
    when it took a single value."""
    texts = [as_cell(v) for v in column]
    if len({str(t) for t in texts}) <= 1:
        return None
    if all(finite_number(t) is not None for t in texts):
        return np.array([float(t) for t in texts])
    labels = sorted({str(t) for t in texts})
    return np.array([labels.index(str(t)) for t in texts], dtype=float)


def main_effects(columns: dict[str, list[Any]], values: list[float], seed: int = 0,
                 trees: int = 100) -> Importance | None:
    """The importance of each parameter in ``columns`` (name -> its value in each trial) for
    ``values`` (the metric of each trial; non-finite ones are left out). None with fewer than
    :data:`MIN_TRIALS` finite values or no parameter that varies."""
    from sklearn.ensemble import RandomForestRegressor

    keep = [i for i, v in enumerate(values) if math.isfinite(v)]
    encoded = {}
    for name, column in columns.items():
        x = encode([column[i] for i in keep])
        if x is not None:
            encoded[name] = x
    if len(keep) < MIN_TRIALS or not encoded:
        return None
    names = list(encoded)
    x = np.column_stack([encoded[n] for n in names])
    y = np.array([values[i] for i in keep])
    forest = RandomForestRegressor(n_estimators=trees, min_samples_leaf=2, oob_score=True,
                                   random_state=seed).fit(x, y)
    r2 = float(forest.oob_score_) if math.isfinite(forest.oob_score_) else None
    total = float(np.var(forest.predict(x)))
    shares = {}
    for j, name in enumerate(names):
        grid = np.unique(np.quantile(x[:, j], np.linspace(0, 1, GRID), method="nearest"))
        probe = np.repeat(x[None], len(grid), axis=0)  # (grid, trials, parameters)
        probe[:, :, j] = grid[:, None]
        effect = forest.predict(probe.reshape(-1, len(names))).reshape(len(grid), -1).mean(1)
        # each trial's own value, read off the grid at the nearest grid point
        nearest = np.abs(x[:, j][:, None] - grid[None, :]).argmin(axis=1)
        shares[name] = float(np.var(effect[nearest]) / total) if total > 0 else 0.0
    return Importance(shares, r2, len(keep))
