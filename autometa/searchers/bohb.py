"""BOHB through hpbandster: Ray's ``TuneBOHB`` on the ConfigSpace conversion.

Run it with the ``bohb`` scheduler (Ray's ``HyperBandForBOHB``), which supplies
the budgets BOHB's model is built on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from autometa.searchers.base import SpaceSearcher
from autometa.searchers.specs import BOHBSpec
from autometa.space import Space


class BOHBSearcher(SpaceSearcher):
    """BOHB's kernel-density model (hpbandster) on an autometa space.

    Conditions and forbidden clauses go to ConfigSpace natively. Trials that
    reappear after an experiment restore without a record in the model are
    re-registered from their configs (``TuneBOHB`` would raise ``KeyError``). hpbandster
    samples from its model with NumPy's global generator; this searcher gives it a generator
    of its own (seeded, saved with the searcher), so its suggestions follow ``seed``.

    Args:
        bohb_config: Options of hpbandster's ``BOHB`` config generator
            (``min_points_in_model``, ``top_n_percent``, ``num_samples``, ...).
        **kwargs: See :class:`SpaceSearcher`.
    """

    spec = BOHBSpec

    models_results = True

    def __init__(self, space: Space | None = None, metric: str | None = None,
                 mode: str | None = None, seed: int | None = None,
                 bohb_config: dict | None = None, **kwargs: Any) -> None:
        super().__init__(space, metric, mode, seed, **kwargs)
        self.bohb_config = dict(bohb_config or {})

    def _setup(self) -> None:
        from ray.tune.search.bohb import TuneBOHB

        from autometa.convert.configspace import to_configspace

        self._base = TuneBOHB(space=to_configspace(self.space, seed=self.seed),
                              bohb_config=self.bohb_config, metric=self._metric,
                              mode=self._mode, seed=self.seed)
        # hpbandster samples from its model with NumPy's global generator: give it its own,
        # seeded and saved with the searcher, so suggestions follow the seed and a restore
        self._numpy_state = np.random.RandomState(self.seed).get_state()
        self._told = 0

    def _propose(self, trial_id: str) -> dict[str, Any] | None:
        from autometa.convert.configspace import decode_configspace

        with self._own_numpy_generator():
            native = self._base.suggest(trial_id)
        return None if native is None else decode_configspace(self.space, native)

    def _observe_intermediate(self, trial_id: str, result: dict) -> None:
        if "hyperband_info" in result:
            with self._own_numpy_generator():  # (model fits impute inactive values randomly)
                self._base.on_trial_result(trial_id, result)

    def _observe(self, trial_id: str, result: dict | None, error: bool) -> None:
        with self._own_numpy_generator():
            self._base.on_trial_complete(trial_id, result=result, error=error)

    def _tell(self, flat: dict[str, Any], value: float | None) -> None:
        """Add the point to hpbandster's observations, on the largest budget its model has
        seen (budget 1 before any); a failed point is left out."""
        if value is None:
            return
        from autometa.convert.configspace import encode_configspace

        budgets = list(self._base.bohber.configs)
        self._told += 1
        trial_id = f"evaluated-{self._told}"
        self._base.trial_to_params[trial_id] = encode_configspace(self.space, flat)
        self._base.running.add(trial_id)
        result = {self._metric: value, "hyperband_info": {"budget": max(budgets, default=1)}}
        with self._own_numpy_generator():
            self._base.on_trial_result(trial_id, result)
            self._base.on_trial_complete(trial_id, result=result)

    @contextlib.contextmanager
    def _own_numpy_generator(self) -> Iterator[None]:
        outside = np.random.get_state()
        np.random.set_state(self._numpy_state)
        try:
            yield
        finally:
            self._numpy_state = np.random.get_state()
            np.random.set_state(outside)

    def _adopted(self, trial_id: str, flat: dict[str, Any]) -> None:
        from autometa.convert.configspace import encode_configspace

        self._base.trial_to_params[trial_id] = encode_configspace(self.space, flat)
        self._base.running.add(trial_id)

