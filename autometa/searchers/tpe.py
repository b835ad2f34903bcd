"""TPE through hyperopt: Ray's ``HyperOptSearch`` on the converted space."""

from __future__ import annotations

from typing import Any

import numpy as np

from autometa.searchers.base import SpaceSearcher
from autometa.searchers.specs import TPESpec
from autometa.space import Space


class TPESearcher(SpaceSearcher):
    """Tree-structured Parzen Estimator (hyperopt) on an autometa space.

    Nested choices are native ``hp.choice`` branches; conditional parameters are
    drawn always and dropped when inactive; forbidden combinations and truncated
    normals are rejected and redrawn. A rejected draw enters hyperopt's history as an
    evaluation with the worst metric seen so far (as failed before any result), so that TPE
    moves away from it: reported as failed, TPE ignores it and proposes the same forbidden
    point again. Constraints therefore do shape the "bad" density of TPE's model near them.

    Args:
        n_initial_points: Random draws before TPE starts modelling.
        gamma: TPE's quantile splitting good from bad observations.
        **kwargs: See :class:`SpaceSearcher`.
    """

    spec = TPESpec

    models_results = True

    def __init__(self, space: Space | None = None, metric: str | None = None,
                 mode: str | None = None, seed: int | None = None, n_initial_points: int = 20,
                 gamma: float = 0.25, **kwargs: Any) -> None:
        super().__init__(space, metric, mode, seed, **kwargs)
        self.spec.check({"n_initial_points": n_initial_points, "gamma": gamma})
        self.n_initial_points = n_initial_points
        self.gamma = gamma

    def _setup(self) -> None:
        from ray.tune.search.hyperopt import HyperOptSearch

        from autometa.convert.hyperopt import to_hyperopt

        self._base = HyperOptSearch(space=to_hyperopt(self.space), metric=self._metric,
                                    mode=self._mode, n_initial_points=self.n_initial_points,
                                    gamma=self.gamma, random_state_seed=self.seed)
        self._attempt = 0

    def _propose(self, trial_id: str) -> dict[str, Any] | None:
        from autometa.convert.hyperopt import decode_hyperopt

        native = self._base.suggest(trial_id)
        return None if native is None else decode_hyperopt(self.space, native)

    def _observe_intermediate(self, trial_id: str, result: dict) -> None:
        self._base.on_trial_result(trial_id, result)

    def _observe(self, trial_id: str, result: dict | None, error: bool) -> None:
        self._base.on_trial_complete(trial_id, result=result, error=error)

    def _tell(self, flat: dict[str, Any], value: float | None) -> None:
        """Insert the point into hyperopt's trial history as a finished evaluation.

        A failed point is left out (TPE models only successes). An inactive conditional
        parameter, which hyperopt draws always, gets a draw from the space.
        """
        if value is None:
            return
        import hyperopt

        from autometa.convert.hyperopt import encode_hyperopt

        trials = self._base._hpopt_trials
        labels = list(self._base.domain.params)
        rng = np.random.default_rng(len(trials.trials))
        encoded = encode_hyperopt(self.space, flat, rng)
        tid = trials.new_trial_ids(1)[0]
        misc = {"tid": tid, "cmd": ("domain_attachment", "FMinIter_Domain"), "workdir": None,
                "idxs": {k: [tid] if k in encoded else [] for k in labels},
                "vals": {k: [encoded[k]] if k in encoded else [] for k in labels}}
        result = {"loss": self._base.metric_op * value, "status": hyperopt.STATUS_OK}
        (doc,) = trials.new_trial_docs([tid], [None], [result], [misc])
        doc["state"] = hyperopt.JOB_STATE_DONE
        trials.insert_trial_docs([doc])
        trials.refresh()
