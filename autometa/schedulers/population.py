"""Hypergradient-guided population based training (a Ray ``PopulationBasedTraining``).

At every perturbation interval the bottom trials copy the checkpoint of top trials
(exploit, Ray's own code: a trial that never saved is never copied), then *explore*: the
space's ``differentiable`` parameters move against the hypergradient the cloned trial last
reported (``hypergrad/<key>`` at ``hparams/<key>``), a signed step of ``step_size`` in the
parameter's unconstrained coordinate (log for log-scale, logit to the bounds), so they
stay inside their bounds; without a reported hypergradient they are perturbed by PBT's
factors. The other parameters are resampled or perturbed as PBT does.

Its state (per trial: last perturbation time, score, result and checkpoint to copy; the
perturbation counts and its random generator) survives ``Tuner.restore`` through
:class:`~autometa.schedulers.persist.SchedulerStateCallback` (Ray's own PBT restarts from
scratch: every restored trial would be perturbed again at its first report).
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any

from ray.tune import Checkpoint
from ray.tune.schedulers import PopulationBasedTraining

from autometa.space import Space
from autometa.space import unconstrained as coords


def explore_differentiable(space: Space, config: dict, result: dict, mode: str,
                           step_size: float, factors: tuple[float, float],
                           rng: random.Random) -> tuple[dict, dict[str, str]]:
    """New values of the differentiable parameters (a pure function of the cloned trial).

    :math:`u' = u - \\eta\\, \\mathrm{sign}(\\partial L/\\partial u)`,
    :math:`\\partial L/\\partial u = (\\partial L/\\partial x)(dx/du)`, with
    :math:`L` the metric (negated when maximizing).
    """
    config = copy.deepcopy(config)
    operations = {}
    sign = 1.0 if mode == "min" else -1.0
    for p in space.differentiable():
        node = config
        for part in p.path[:-1]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict) or not isinstance(node.get(p.path[-1]), (int, float)):
            continue
        x = result.get(f"hparams/{p.key}", node[p.path[-1]])
        g = result.get(f"hypergrad/{p.key}")
        u = coords.to_unconstrained(p, float(x))
        if isinstance(g, (int, float)) and math.isfinite(g) and g != 0:
            du = sign * g * coords.derivative(p, u)
            u_new = u - step_size * math.copysign(1.0, du)
            operations[p.key] = f"hypergradient step ({'-' if du > 0 else '+'})"
        else:
            factor = rng.choice(factors)
            u_new = coords.to_unconstrained(p, min(max(float(x) * factor, p.low if p.low is not None
                                                       else -math.inf),
                                               p.high if p.high is not None else math.inf))
            operations[p.key] = f"* {factor}"
        node[p.path[-1]] = coords.from_unconstrained(p, coords.clip_unconstrained(p, u_new))
    return config, operations


class HypergradientPBT(PopulationBasedTraining):
    """PBT whose explore step follows reported hypergradients (see the module docstring).

    Args:
        space: The search space (its ``differentiable`` parameters are moved by hypergradient).
        step_size: Signed step in unconstrained units per explore.
        hyperparam_mutations: PBT mutations of the other parameters (default: none).
        **kwargs: Options of ``PopulationBasedTraining`` (``perturbation_interval``,
            ``quantile_fraction``, ``resample_probability``, ``perturbation_factors``, ...).
    """

    def __init__(self, space: Space, step_size: float = 0.5,
                 hyperparam_mutations: dict | None = None, seed: int | None = None,
                 time_attr: str = "training_iteration", **kwargs: Any) -> None:
        self.space = space
        self.step_size = step_size
        self._rng = random.Random(seed)
        self._restored: dict[str, dict[str, Any]] = {}
        super().__init__(time_attr=time_attr, hyperparam_mutations=hyperparam_mutations or {},
                         custom_explore_fn=None if hyperparam_mutations else (lambda c: c),
                         **kwargs)

    def _get_new_config(self, trial: Any, trial_to_clone: Any) -> tuple[dict, dict]:
        config, operations = super()._get_new_config(trial, trial_to_clone)
        result = self._trial_state[trial_to_clone].last_result or trial_to_clone.last_result or {}
        config, moved = explore_differentiable(self.space, config, result, self._mode or "min",
                                               self.step_size, self._perturbation_factors,
                                               self._rng)
        return config, {**operations, **moved}

    # ------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, Any]:
        """What a restored experiment needs (see :mod:`autometa.schedulers.persist`)."""
        trials = {}
        for trial, state in self._trial_state.items():
            checkpoint = state.last_checkpoint
            if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
                checkpoint = trial.checkpoint  # a save still in flight: its latest one
            trials[trial.trial_id] = {
                "last_score": state.last_score, "last_checkpoint": checkpoint,
                "last_perturbation_time": state.last_perturbation_time,
                "last_train_time": state.last_train_time, "last_result": state.last_result}
        return {"trials": {**self._restored, **trials}, "rng": self._rng.getstate(),
                "num_perturbations": self._num_perturbations,
                "num_checkpoints": self._num_checkpoints,
                "next_perturbation_sync": self._next_perturbation_sync}

    def set_state(self, state: dict[str, Any]) -> None:
        """Take over a saved state; trials pick theirs up when Tune re-adds them."""
        self._restored = dict(state["trials"])
        self._rng.setstate(state["rng"])
        self._num_perturbations = state["num_perturbations"]
        self._num_checkpoints = state["num_checkpoints"]
        self._next_perturbation_sync = state["next_perturbation_sync"]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        saved = self._restored.pop(trial.trial_id, None)
        if saved is not None:
            for name, value in saved.items():
                setattr(self._trial_state[trial], name, value)
