"""Random search: independent draws from the space (conditions and forbidden clauses respected)."""

from __future__ import annotations

from typing import Any

import numpy as np

from autometa.searchers.base import SpaceSearcher
from autometa.searchers.specs import RandomSpec


class RandomSearcher(SpaceSearcher):
    """Draw every trial independently from the space's own distributions.

    Ray's ``BasicVariantGenerator`` is a search *algorithm*, not a ``Searcher``,
    so it cannot sit under ``ConcurrencyLimiter`` nor enforce forbidden
    combinations; this thin searcher can.

    Example:
        >>> from autometa.space import space_from_dict
        >>> space = space_from_dict({"parameters": {"x": {"type": "uniform", "low": 0, "high": 1}}})
        >>> searcher = RandomSearcher(space, metric="loss", mode="min", seed=0)
        >>> 0 <= searcher.suggest("t1")["x"] <= 1
        True
    """

    spec = RandomSpec

    def _setup(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def _propose(self, trial_id: str) -> dict[str, Any]:
        return self.space.sample_flat(self._rng)
