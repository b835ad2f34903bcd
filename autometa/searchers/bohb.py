"""BOHB through hpbandster: Ray's ``TuneBOHB`` on the ConfigSpace conversion.

Run it with the ``bohb`` scheduler (Ray's ``HyperBandForBOHB``), which supplies
the budgets BOHB's model is built on.
"""

from __future__ import annotations

from typing import Any

from autometa.searchers.base import SpaceSearcher
from autometa.space import Space


class BOHBSearcher(SpaceSearcher):
    """BOHB's kernel-density model (hpbandster) on an autometa space.

    Conditions and forbidden clauses go to ConfigSpace natively. Trials that
    reappear after an experiment restore without a record in the model are
    re-registered from their configs (``TuneBOHB`` would raise ``KeyError``).

    Args:
        bohb_config: Options of hpbandster's ``BOHB`` config generator
            (``min_points_in_model``, ``top_n_percent``, ``num_samples``, ...).
        **kwargs: See :class:`SpaceSearcher`.
    """

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

    def _propose(self, trial_id: str) -> dict[str, Any] | None:
        from autometa.convert.configspace import decode_configspace

        native = self._base.suggest(trial_id)
        return None if native is None else decode_configspace(self.space, native)

    def _observe_intermediate(self, trial_id: str, result: dict) -> None:
        if "hyperband_info" in result:
            self._base.on_trial_result(trial_id, result)

    def _observe(self, trial_id: str, result: dict | None, error: bool) -> None:
        self._base.on_trial_complete(trial_id, result=result, error=error)

    def _adopted(self, trial_id: str, flat: dict[str, Any]) -> None:
        from autometa.convert.configspace import encode_configspace

        self._base.trial_to_params[trial_id] = encode_configspace(self.space, flat)
        self._base.running.add(trial_id)

