"""The hypergradient searcher: descent chains on differentiable parameters, a base searcher for the rest.

Trials report ``hypergrad/<key>`` (d metric / d value, in the value's units) and optionally
``hparams/<key>`` (the value actually used) for the space's ``differentiable`` parameters
(see :mod:`autometa.trial`). Each chain fixes the other parameters to a base searcher's
suggestion and walks the differentiable ones in unconstrained coordinates (log for log-scale,
logit to the bounds; :mod:`autometa.space.unconstrained`) with diagonally scaled
Barzilai-Borwein steps, a trust radius and backtracking on the observed metric
(:mod:`autometa.searchers._chain`). Several
chains run at once when Tune allows several concurrent trials. Results without hypergradients
make it warn once and behave as its base searcher.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from autometa.searchers._chain import Chain, ChainSettings
from autometa.searchers.base import SpaceSearcher
from autometa.space import Space
from autometa.space import unconstrained as coords
from autometa.trial.keys import (
    CONVERGED,
    HYPERGRAD_PREFIX,
    INNER_GAP,
    RESIDUAL,
    finite_number,
    hypergrad_key,
    nonfinite_number,
    reported_hparam,
    reported_hypergrad,
    reported_names,
)

logger = logging.getLogger(__name__)


class HypergradientSearcher(SpaceSearcher):
    """Gradient-based search on the space's differentiable parameters.

    Args:
        base: Searcher for everything else and for chain starts: ``random``, ``tpe`` or ``bohb``.
        base_options: Options of the base searcher.
        chains: Most chains alive at once (each has at most one pending trial).
        radius, max_radius, min_radius, grow, shrink, chain_length: Step control of a chain
            (trust radius in unconstrained units; see :mod:`autometa.searchers._chain`).
        precondition: Scale each coordinate by the RMS of its past hypergradients.
        differentiable: Names (space keys) of the parameters to descend on. Default: those
            the space marks ``differentiable``; with none marked (a plain Tune
            ``param_space``), the continuous parameters whose ``hypergrad/<name>`` the first
            results report (logged when adopted).
        holdout_metric: A result key measured on data the descent does not see (e.g.
            ``holdout_loss``, same mode as the metric); a chain stops after ``patience``
            accepted steps without improving it, so it does not overfit the validation set
            (rejected steps, after which the chain backtracks, do not count).
        patience: See ``holdout_metric``.
        **kwargs: See :class:`SpaceSearcher`.

    Example:
        >>> from autometa.space import space_from_dict
        >>> from autometa.trial.keys import hypergrad_key
        >>> space = space_from_dict({"parameters": {"lam": {"type": "loguniform", "low": 1e-4,
        ...     "high": 10.0, "differentiable": True}}})
        >>> s = HypergradientSearcher(space, metric="loss", mode="min", seed=0)
        >>> config = s.suggest("t1")
        >>> s.on_trial_complete("t1", {"loss": 1.0, hypergrad_key("lam"): 2.0, "config": config})
        >>> s.suggest("t2")["lam"] < config["lam"]   # a positive derivative lowers the value
        True
    """

    def __init__(self, space: Space | None = None, metric: str | None = None,
                 mode: str | None = None, seed: int | None = None, base: str = "random",
                 base_options: dict | None = None, chains: int = 4, radius: float = 1.0,
                 max_radius: float = 4.0, min_radius: float = 1e-3, grow: float = 2.0,
                 shrink: float = 0.3, chain_length: int = 30, precondition: bool = True,
                 holdout_metric: str | None = None, patience: int = 3,
                 differentiable: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(space, metric, mode, seed, **kwargs)
        self.differentiable = None if differentiable is None else list(differentiable)
        if base not in ("random", "tpe", "bohb"):
            raise ValueError(f"base must be 'random', 'tpe' or 'bohb', got {base!r}")
        self.base_name, self.base_options = base, dict(base_options or {})
        self.max_chains = chains
        self.settings = ChainSettings(radius=radius, max_radius=max_radius,
                                      min_radius=min_radius, grow=grow, shrink=shrink,
                                      max_length=chain_length, precondition=precondition,
                                      patience=patience if holdout_metric else 0)
        self.holdout_metric = holdout_metric

    def _setup(self) -> None:
        from autometa.searchers import make_searcher

        self._base = make_searcher(self.base_name, self.space, metric=self._metric,
                                   mode=self._mode, seed=self.seed, **self.base_options)
        self._params = self._chosen()
        self._inferred = False
        self._chains: list[Chain] = []
        self._trial_chain: dict[str, int] = {}
        self._base_trials: set[str] = set()
        self._seeds: list[tuple[float, dict[str, Any]]] = []
        self._gradients_seen = False
        self._warned = False
        self.retired: list[Chain] = []

    def _chosen(self) -> list:
        if self.differentiable is None:
            return self.space.differentiable()
        try:
            return coords.continuous(self.space, self.differentiable)
        except ValueError as err:
            raise ValueError(f"differentiable: {err}") from None

    def _infer(self, result: dict) -> None:
        """With nothing marked, adopt the continuous parameters the results differentiate."""
        if self._params or self._inferred or self.differentiable is not None or result is None:
            return
        self._inferred = True
        reported = set(reported_names(result))
        found = [p for p in self.space if coords.is_continuous(p) and p.key in reported]
        if found:
            self._params = found
            logger.info("HypergradientSearcher: no parameter marked differentiable; descending "
                        "on %s, whose %s<name> the trials report", [p.key for p in found],
                        HYPERGRAD_PREFIX)
        else:
            logger.warning("HypergradientSearcher: no parameter is differentiable (none marked, "
                           "none passed as differentiable=[...], and the results report no %s"
                           "<name> for a continuous parameter); searching like the %s base "
                           "searcher", HYPERGRAD_PREFIX, self.base_name)
            self._warned = True

    # ------------------------------------------------------------ proposals
    def _propose(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self._params or (self._warned and not self._gradients_seen):
            return self._from_base(trial_id)
        for index, chain in enumerate(self._chains):
            if chain.pending is None and chain.best_u is not None and not chain.done:
                return self._from_chain(trial_id, index)
        if len([c for c in self._chains if not c.done]) < self.max_chains:
            flat = self._from_base(trial_id)
            if isinstance(flat, dict) and all(p.key in flat for p in self._params):
                self._start_chain(trial_id, flat)  # (a conditional one may be inactive: no chain)
            return flat
        return None  # every chain waits for its trial

    def _from_base(self, trial_id: str) -> Any:
        if self._seeds:  # evaluated points handed over by add_evaluated_point, best first
            return dict(self._seeds.pop(0)[1])
        self._base._ensure_ready()
        flat = self._base._propose(trial_id)
        if isinstance(flat, dict):
            self._base_trials.add(trial_id)
        return flat

    def _start_chain(self, trial_id: str, flat: dict[str, Any]) -> None:
        start = np.array([coords.to_unconstrained(p, flat[p.key]) for p in self._params])
        context = {k: v for k, v in flat.items() if k not in {p.key for p in self._params}}
        self._chains.append(Chain(context, start, self.settings))
        self._attach(trial_id, len(self._chains) - 1, start)

    def _from_chain(self, trial_id: str, index: int) -> dict[str, Any]:
        chain = self._chains[index]
        u = np.array([coords.clip_unconstrained(p, x)
                      for p, x in zip(self._params, chain.next_point(), strict=True)])
        self._attach(trial_id, index, u)
        flat = dict(chain.context)
        for p, value in zip(self._params, u, strict=True):
            flat[p.key] = coords.from_unconstrained(p, float(value))
        # Parameters that became active or inactive keep the space consistent.
        return self.space.flatten(self.space.assemble(flat))

    def _attach(self, trial_id: str, index: int, u: np.ndarray) -> None:
        self._chains[index].pending, self._chains[index].pending_u = trial_id, u
        self._trial_chain[trial_id] = index

    # ---------------------------------------------------------- observations
    def _observe(self, trial_id: str, result: dict | None, error: bool) -> None:
        self._infer(result)
        if trial_id in self._base_trials:
            self._base_trials.discard(trial_id)
            self._base._observe(trial_id, result, error)
            self._base._live.pop(trial_id, None)
        index = self._trial_chain.pop(trial_id, None)
        if index is None:
            return
        chain = self._chains[index]
        u = chain.pending_u
        chain.pending, chain.pending_u = None, None
        f, grad = self._objective(result, u) if result is not None else (None, None)
        if result is not None and grad is None and not self._gradients_seen and not self._warned:
            logger.warning("HypergradientSearcher: results carry no %s<name> for %s; searching "
                           "like the %s base searcher", HYPERGRAD_PREFIX,
                           [p.key for p in self._params], self.base_name)
            self._warned = True
        if grad is not None:
            self._gradients_seen = True
            u = self._reported_point(result, u)
        accepted = chain.observe(u, f, grad)
        if self.holdout_metric and result is not None:
            watched = finite_number(result.get(self.holdout_metric))
            sign = 1.0 if self._mode == "min" else -1.0
            chain.watch(None if watched is None else sign * watched, accepted)
        if chain.done:
            self.retired.append(chain)

    def _reject(self, trial_id: str) -> None:
        index = self._trial_chain.pop(trial_id, None)
        if index is not None:  # a chain point broke a forbidden clause: shrink and retry
            chain = self._chains[index]
            chain.pending, chain.pending_u = None, None
            chain.radius *= self.settings.shrink
        if trial_id in self._base_trials:
            self._base_trials.discard(trial_id)
            self._base._worst = self._worst  # the base model hears results only through us
            self._base._reject(trial_id)
            if index is not None:
                self._chains.pop(index)
                self._trial_chain = {t: (i - 1 if i > index else i)
                                     for t, i in self._trial_chain.items()}

    def _objective(self, result: dict, u: np.ndarray) -> tuple[float | None, np.ndarray | None]:
        value = finite_number(result.get(self._metric))
        if value is None:
            return None, None
        sign = 1.0 if self._mode == "min" else -1.0
        grads = []
        for p, ui in zip(self._params, u, strict=True):
            g = reported_hypergrad(result, p.key)
            if g is None:
                if nonfinite_number(result.get(hypergrad_key(p.key))):
                    self._say_once("nonfinite", "HypergradientSearcher: a trial reported %s=%r "
                                   "with a finite %s; that step uses the metric alone (further "
                                   "cases are not logged)", hypergrad_key(p.key),
                                   result.get(hypergrad_key(p.key)), self._metric)
                return sign * value, None
            grads.append(sign * g * coords.derivative(p, float(ui)))   # dL/du = dL/dx dx/du
        if finite_number(result.get(CONVERGED)) == 0.0:
            self._say_once("unconverged", "HypergradientSearcher: trials report hypergradients "
                           "that failed their checks (%s = 0); they are used as reported, and the "
                           "backtracking on %s guards the steps (see the trials' %s and %s)",
                           CONVERGED, self._metric, RESIDUAL, INNER_GAP)
        return sign * value, np.array(grads)

    def _say_once(self, what: str, message: str, *args: Any) -> None:
        said = self.__dict__.setdefault("_said", set())
        if what not in said:
            said.add(what)
            logger.warning(message, *args)

    def _reported_point(self, result: dict, u: np.ndarray) -> np.ndarray:
        out = u.copy()
        for i, p in enumerate(self._params):
            x = reported_hparam(result, p.key)
            if x is not None:
                out[i] = coords.to_unconstrained(p, x)
        return out

    def _adopted(self, trial_id: str, flat: dict[str, Any]) -> None:
        pass  # a trial from before a restore: its result still reaches the base searcher


    def _observe_intermediate(self, trial_id: str, result: dict) -> None:
        if trial_id in self._base_trials:
            self._base._observe_intermediate(trial_id, result)

    def add_evaluated_point(self, parameters: dict, value: float, error: bool = False,
                            pruned: bool = False, intermediate_values: list | None = None) -> None:
        """Remember an evaluated configuration: the best ones start the next chains.

        Its hypergradient is unknown, so a chain's first trial evaluates it again.
        """
        self._ensure_ready()
        if error or finite_number(value) is None:
            return
        value = finite_number(value)
        sign = 1.0 if self._mode == "min" else -1.0
        self._seeds.append((sign * value, self.space.flatten(parameters)))
        self._seeds.sort(key=lambda item: item[0])
