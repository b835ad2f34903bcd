"""Grid search: every combination of the ``grid`` parameters, the rest drawn at random."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from autometa.searchers.base import SpaceSearcher
from autometa.searchers.specs import GridSpec
from autometa.space import Space


class GridSearcher(SpaceSearcher):
    """Enumerate the Cartesian product of the ``grid`` parameters, ``repeats`` times.

    Other parameters are drawn at random for each trial (Tune's grid semantics).
    Grid points whose conditions make a grid parameter inactive are enumerated
    once, and forbidden combinations are skipped. Returns ``FINISHED`` after the
    last point, so Tune may run with ``num_samples=-1``.

    Args:
        repeats: How many times the whole grid is run.
        **kwargs: See :class:`SpaceSearcher`.
    """

    spec = GridSpec

    def __init__(self, space: Space | None = None, metric: str | None = None,
                 mode: str | None = None, seed: int | None = None, repeats: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(space, metric, mode, seed, **kwargs)
        self.spec.check({"repeats": repeats})
        self.repeats = repeats

    def _setup(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._points = grid_points(self.space)  # each run ``repeats`` times, in turn
        self._next = 0

    @property
    def total(self) -> int:
        """Number of trials the grid yields (available after setup)."""
        self._ensure_ready()
        return len(self._points) * self.repeats

    def planned_trials(self, num_samples: int) -> int:
        return self.total  # the grid, ``repeats`` times, whatever Tune's num_samples

    def _propose(self, trial_id: str) -> dict[str, Any] | str:
        if self._next >= self.total:
            return Searcher.FINISHED
        point = self._points[self._next % len(self._points)]
        self._next += 1
        return self.space.sample_flat(self._rng, fixed=point)

    def _reject(self, trial_id: str) -> None:
        pass  # a forbidden random part: the same grid point is drawn again


def grid_points(space: Space) -> list[dict[str, Any]]:
    """All distinct active combinations of grid parameters that are not forbidden."""
    grid = [p for p in space.parameters if p.dist == "grid"]
    only_on_grid = _conditions_only_on_grid(space, grid)
    seen, points = set(), []
    for combo in itertools.product(*(p.values for p in grid)):
        flat = dict(zip((p.key for p in grid), combo, strict=True))
        active = {}
        for p in space.parameters:  # keep only grid values whose conditions hold
            if p.key in flat and space.is_active(p, {**flat, **active}):
                active[p.key] = flat[p.key]
        if not only_on_grid:
            active = flat
        key = repr(sorted(active.items(), key=lambda kv: kv[0]))
        forbidden = any(rule.matches(active) for rule in space.forbidden
                        if all(k in flat for k, _ in rule.clauses))
        if key not in seen and not forbidden:
            seen.add(key)
            points.append(active)
    return points


def _conditions_only_on_grid(space: Space, grid: list) -> bool:
    keys = {p.key for p in grid}
    return all(c.parent in keys for p in grid for c in p.conditions)
