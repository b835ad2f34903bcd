"""Population based training on a search space: Ray's PBT, and the hypergradient-guided one.

At every perturbation interval the bottom trials copy the checkpoint of top trials
(exploit, Ray's own code: a trial that never saved is never copied), then *explore*: the
space's ``differentiable`` parameters move against the hypergradient the cloned trial last
reported (``hypergrad/<key>`` at ``hparams/<key>``), a signed step of ``step_size`` in the
parameter's unconstrained coordinate (log for log-scale, logit to the bounds), so they
stay inside their bounds; without a reported hypergradient they are perturbed by PBT's
factors. The other parameters are resampled or perturbed as PBT does: by default every
unconditional, non-differentiable parameter of the space is mutated (a ``choice`` shifts to a
neighbouring value or is resampled, a number is multiplied by a perturbation factor or
resampled), and numbers are then clipped back to their bounds.

Its state (per trial: last perturbation time, score, result and checkpoint to copy; the
perturbation counts and its random generator) survives ``Tuner.restore`` through
:class:`~autometa.schedulers.persist.SchedulerStateCallback` (Ray's own PBT restarts from
scratch: every restored trial would be perturbed again at its first report).
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Collection, Sequence
from typing import Any

from ray.tune import Checkpoint
from ray.tune.schedulers import PopulationBasedTraining

from autometa.space import Parameter, Space
from autometa.space import unconstrained as coords
from autometa.trial.keys import (
    HYPERGRAD_PREFIX,
    finite_number,
    hypergrad_key,
    nonfinite_number,
    reported_hparam,
    reported_hypergrad,
)

logger = logging.getLogger("autometa.schedulers")
_SAID_NONFINITE: set[str] = set()


def space_mutations(space: Space, differentiable: bool = False,
                    exclude: Collection[str] = ()) -> dict[str, Any]:
    """PBT's ``hyperparam_mutations`` for the unconditional parameters of ``space``.

    The ``differentiable`` ones are included only when ``differentiable`` is true; those
    named in ``exclude`` never.

    ``choice`` parameters become lists (PBT moves to a neighbouring value or resamples), the
    other distributions Tune domains; constants, grids and conditional parameters are left out.
    """
    from autometa.convert.tune import tune_domain

    selectors = {c.parent for p in space.parameters for c in p.conditions}
    out: dict[str, Any] = {}
    for p in space.parameters:
        if ((p.differentiable and not differentiable) or p.key in exclude or p.conditions
                or p.key in selectors or p.dist in ("constant", "grid")):
            continue
        node = out
        for part in p.path[:-1]:
            node = node.setdefault(part, {})
        node[p.path[-1]] = list(p.values) if p.dist == "choice" else tune_domain(space, p)
    return out


def clip_to_space(space: Space, config: dict) -> dict:
    """Numbers of ``config`` put back inside their parameters' bounds (integers stay integers)."""
    for p in space.parameters:
        if p.dist not in ("uniform", "randint", "normal"):
            continue
        node = config
        for part in p.path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        value = node.get(p.path[-1]) if isinstance(node, dict) else None
        if finite_number(value) is None:
            continue
        low = p.low if p.low is not None else -math.inf
        high = p.high if p.high is not None else math.inf
        value = min(max(value, low), high)
        node[p.path[-1]] = int(round(value)) if p.dist == "randint" else value
    return config


def explore_differentiable(space: Space, config: dict, result: dict, mode: str,
                           step_size: float, factors: tuple[float, float],
                           rng: random.Random, params: Sequence[Parameter] | None = None,
                           ) -> tuple[dict, dict[str, str]]:
    """New values of the differentiable parameters (a pure function of the cloned trial);
    ``params``: those to move (default: the ones the space marks).

    :math:`u' = u - \\eta\\, \\mathrm{sign}(\\partial L/\\partial u)`,
    :math:`\\partial L/\\partial u = (\\partial L/\\partial x)(dx/du)`, with
    :math:`L` the metric (negated when maximizing).
    """
    config = copy.deepcopy(config)
    operations = {}
    sign = 1.0 if mode == "min" else -1.0
    for p in space.differentiable() if params is None else params:
        node = config
        for part in p.path[:-1]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict) or finite_number(node.get(p.path[-1])) is None:
            continue
        x = reported_hparam(result, p.key)
        x = node[p.path[-1]] if x is None else x
        g = reported_hypergrad(result, p.key)
        if g is None and nonfinite_number(result.get(hypergrad_key(p.key))) \
                and p.key not in _SAID_NONFINITE:
            _SAID_NONFINITE.add(p.key)
            logger.warning("population scheduler: a trial reported %s=%r; its explore step "
                           "for %s is a random perturbation instead (said once per parameter)",
                           hypergrad_key(p.key), result.get(hypergrad_key(p.key)), p.key)
        u = coords.to_unconstrained(p, float(x))
        if g is not None and g != 0:
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


def _unchanged(config: dict) -> dict:
    return config


class SpacePBT(PopulationBasedTraining):
    """Ray's ``PopulationBasedTraining`` on a search space, with its state kept across restores.

    Explore is Ray's own: every unconditional parameter of the space is resampled or perturbed
    (``hyperparam_mutations`` from :func:`space_mutations`), then clipped to its bounds.

    Args:
        space: The search space.
        hyperparam_mutations: PBT mutations (default: from the space; ``{}`` for none).
        seed: Seed of autometa's own random choices (Ray's explore uses Python's ``random``).
        **kwargs: Options of ``PopulationBasedTraining`` (``perturbation_interval``,
            ``quantile_fraction``, ``resample_probability``, ``perturbation_factors``, ...).
    """

    _mutate_differentiable = True
    _not_mutated: tuple[str, ...] = ()  # parameters another explore step moves

    def __init__(self, space: Space | dict, hyperparam_mutations: dict | None = None,
                 seed: int | None = None, time_attr: str = "training_iteration",
                 custom_explore_fn: Any = None, **kwargs: Any) -> None:
        from autometa.convert.coerce import as_space

        if space is None:
            raise ValueError(f"{type(self).__name__} needs the search space (space=...)")
        self.space = space = as_space(space)
        self._rng = random.Random(seed)
        self._restored: dict[str, dict[str, Any]] = {}
        if hyperparam_mutations is None:
            hyperparam_mutations = space_mutations(space, self._mutate_differentiable,
                                                   self._not_mutated)
        super().__init__(time_attr=time_attr, hyperparam_mutations=hyperparam_mutations,
                         custom_explore_fn=custom_explore_fn or (
                             None if hyperparam_mutations else _unchanged),
                         **kwargs)

    def _get_new_config(self, trial: Any, trial_to_clone: Any) -> tuple[dict, dict]:
        config, operations = super()._get_new_config(trial, trial_to_clone)
        return clip_to_space(self.space, config), operations

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


class HypergradientPBT(SpacePBT):
    """PBT whose explore step follows reported hypergradients (see the module docstring).

    Args:
        space: The search space: an autometa :class:`~autometa.space.Space`, a Tune
            ``param_space`` dict or a space document.
        step_size: Signed step in unconstrained units per explore.
        differentiable: Names (space keys) of the parameters moved by hypergradient. Default:
            those the space marks ``differentiable``; with none marked (a plain Tune
            ``param_space``), the continuous parameters whose ``hypergrad/<name>`` the first
            cloned trial reports (logged when adopted; with none, it warns once and explores
            as Ray's PBT).
        hyperparam_mutations: PBT mutations of the other parameters (default: every
            unconditional parameter of the space not moved by hypergradient; ``{}`` for none).
        **kwargs: See :class:`SpacePBT`.
    """

    _mutate_differentiable = False

    def __init__(self, space: Space | dict, step_size: float = 0.5,
                 differentiable: list[str] | None = None, **kwargs: Any) -> None:
        from autometa.convert.coerce import as_space

        self.step_size = step_size
        self.differentiable = None if differentiable is None else list(differentiable)
        space = as_space(space) if space is not None else None
        if space is not None and differentiable is not None:
            try:
                self._params = coords.continuous(space, self.differentiable)
            except ValueError as err:
                raise ValueError(f"differentiable: {err}") from None
            # the names replace the markers: a marked parameter not named mutates as any other
            self._mutate_differentiable, self._not_mutated = True, tuple(self.differentiable)
        else:
            self._params = space.differentiable() if space is not None else []
        self._warned = False
        super().__init__(space, **kwargs)

    def _get_new_config(self, trial: Any, trial_to_clone: Any) -> tuple[dict, dict]:
        config, operations = super()._get_new_config(trial, trial_to_clone)
        result = self._trial_state[trial_to_clone].last_result or trial_to_clone.last_result or {}
        if not self._params:
            self._infer(result)
        config, moved = explore_differentiable(self.space, config, result, self._mode or "min",
                                               self.step_size, self._perturbation_factors,
                                               self._rng, self._params)
        return config, {**operations, **moved}  # (both steps keep values inside the bounds)

    def _infer(self, result: dict) -> None:
        """With nothing marked or named, adopt the continuous parameters the cloned trial
        reports hypergradients for."""
        found = [p for p in self.space.parameters if coords.is_continuous(p)
                 and reported_hypergrad(result, p.key) is not None]
        if found:
            self._params = found
            logger.info("HypergradientPBT: no parameter marked differentiable; moving %s by "
                        "the hypergradients the trials report", [p.key for p in found])
        elif not self._warned:
            self._warned = True
            logger.warning("HypergradientPBT: no parameter is differentiable (none marked, "
                           "none passed as differentiable=[...], and the trials report no "
                           "%s<name> for a continuous parameter); exploring as Ray's PBT",
                           HYPERGRAD_PREFIX)
