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
from autometa.searchers.specs import HypergradientSpec
from autometa.space import Space, box
from autometa.space import unconstrained as coords
from autometa.trial.keys import (
    CONVERGED,
    HYPERGRAD_PREFIX,
    INNER_GAP,
    RESIDUAL,
    finite_number,
    gradient_trust,
    hypergrad_key,
    nonfinite_number,
    reported_hparam,
    reported_hypergrad,
    reported_names,
)

logger = logging.getLogger(__name__)

BUDGET = "training_iteration"  # Tune's count of a trial's reports: the budget of a result


class HypergradientSearcher(SpaceSearcher):
    """Gradient-based search on the space's differentiable parameters.

    Args:
        base: Searcher for everything else and for chain starts: ``random``, ``tpe`` or ``bohb``.
        base_options: Options of the base searcher.
        chains: Most chains alive at once.
        probes: Most trials of one chain running at once: with Tune running more trials than
            there are chains, a chain evaluates other directions from its best point (see
            :meth:`Chain.next_point`) instead of a new chain starting.
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

    spec = HypergradientSpec

    models_results = True

    def __init__(self, space: Space | None = None, metric: str | None = None,
                 mode: str | None = None, seed: int | None = None, base: str = "random",
                 base_options: dict | None = None, chains: int = 4, probes: int = 1,
                 radius: float = 0.1,
                 max_radius: float = 0.5, min_radius: float = 1e-4, grow: float = 2.0,
                 shrink: float = 0.3, chain_length: int = 30, precondition: bool = True,
                 memory: int = 8, start: str = "center",
                 holdout_metric: str | None = None, patience: int = 3,
                 differentiable: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(space, metric, mode, seed, **kwargs)
        self.spec.check({
            "base": base, "base_options": base_options, "chains": chains, "probes": probes,
            "radius": radius, "max_radius": max_radius, "min_radius": min_radius, "grow": grow,
            "shrink": shrink, "chain_length": chain_length, "precondition": precondition,
            "memory": memory, "start": start, "holdout_metric": holdout_metric,
            "patience": patience, "differentiable": differentiable})
        self.differentiable = None if differentiable is None else list(differentiable)
        self.base_name, self.base_options = base, dict(base_options or {})
        self.max_chains, self.probes, self.start = chains, probes, start
        self.settings = ChainSettings(radius=radius, max_radius=max_radius,
                                      min_radius=min_radius, grow=grow, shrink=shrink,
                                      max_length=chain_length, precondition=precondition,
                                      memory=memory, patience=patience if holdout_metric else 0)
        self.holdout_metric = holdout_metric

    def _setup(self) -> None:
        from autometa.searchers import make_searcher

        self._base = make_searcher(self.base_name, self.space, metric=self._metric,
                                   mode=self._mode, seed=self.seed, **self.base_options)
        self._params = self._chosen()
        self._inferred = False
        self._chains: dict[int, Chain] = {}     # chain id -> chain
        self._next_chain = 0
        self._trial_chain: dict[str, int] = {}  # trial id -> chain id
        self._base_trials: set[str] = set()
        self._told_trials: set[str] = set()     # evaluated for the base, not proposed by it
        self._given_trials: set[str] = set()    # trials of points_to_evaluate
        self._rng = np.random.default_rng(self.seed)
        self._seeds: list[tuple[float, dict[str, Any]]] = []
        self._gradients_seen = False
        self._warned = False
        self.retired: list[Chain] = []
        self._curves: dict[str, dict[int, float]] = {}  # chain trial -> budget -> signed metric
        self._best_curves: dict[int, dict[int, float]] = {}  # chain id -> its best's curve

    @property
    def all_chains(self) -> list[Chain]:
        """Every chain started so far, oldest first (after setup)."""
        return list(self._chains.values())

    def chain_of(self, trial_id: str) -> Chain | None:
        """The chain a live trial belongs to (None for a base-searcher trial)."""
        chain_id = self._trial_chain.get(trial_id)
        return None if chain_id is None else self._chains[chain_id]

    def chain_trials(self) -> list[list[str]]:
        """The trials each chain completed, in the order it ran them, oldest chain first."""
        return [list(chain.trials) for chain in self.all_chains]

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
    def _point_to_evaluate(self, trial_id: str) -> None:
        return None  # points_to_evaluate start the first chains (see _from_base)

    def _propose(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self._params or (self._warned and not self._gradients_seen):
            return self._from_base(trial_id)
        alive = {i: c for i, c in self._chains.items() if not c.done}
        for chain_id, chain in alive.items():
            if not chain.pending and chain.best_u is not None:
                return self._from_chain(trial_id, chain_id)
        if len(alive) < self.max_chains:
            flat = self._from_base(trial_id, first=not self._chains)
            if isinstance(flat, dict) and all(p.key in flat for p in self._params):
                self._start_chain(trial_id, flat)  # (a conditional one may be inactive: no chain)
            return flat
        for chain_id, chain in alive.items():
            if chain.best_u is not None and len(chain.pending) < self.probes:
                return self._from_chain(trial_id, chain_id)  # a probe along another direction
        # Every chain waits for its trials: the free slot explores with the base searcher.
        # (Waiting instead would deadlock a synchronous scheduler, Hyperband, that pauses the
        # chains' trials until more trials fill its bracket.)
        return self._from_base(trial_id)

    def _from_base(self, trial_id: str, first: bool = False) -> Any:
        """A chain start: a point to evaluate, the best evaluated point, or the base's
        proposal (with the differentiable values at the box's middle for the first chain,
        ``start="center"``)."""
        if self._to_evaluate:
            self._given_trials.add(trial_id)
            return self._to_evaluate.pop(0)
        if self._seeds:  # evaluated points handed over by add_evaluated_point, best first
            return dict(self._seeds.pop(0)[1])
        if first and self.start == "center" and self._params:
            # the others drawn from the space; the base hears the result as an evaluated point
            middle = {p.key: box.from_box(p, box.start(p)) for p in self._params}
            self._told_trials.add(trial_id)
            return self.space.sample_flat(self._rng, fixed=middle)
        flat = self._base.propose(trial_id)
        if isinstance(flat, dict):
            self._base_trials.add(trial_id)
        return flat

    def _start_chain(self, trial_id: str, flat: dict[str, Any]) -> None:
        start = np.array([box.to_box(p, flat[p.key]) for p in self._params])
        context = {k: v for k, v in flat.items() if k not in {p.key for p in self._params}}
        low, high = zip(*(box.bounds(p) for p in self._params), strict=True)
        chain_id, self._next_chain = self._next_chain, self._next_chain + 1
        self._chains[chain_id] = Chain(context, start, self.settings, np.array(low),
                                       np.array(high))
        self._chains[chain_id].propose(trial_id)
        self._trial_chain[trial_id] = chain_id

    def _from_chain(self, trial_id: str, chain_id: int) -> dict[str, Any]:
        chain = self._chains[chain_id]
        z = chain.propose(trial_id)
        self._trial_chain[trial_id] = chain_id
        flat = dict(chain.context)
        for p, value in zip(self._params, z, strict=True):
            flat[p.key] = box.from_box(p, float(value))
        # Parameters that became active or inactive keep the space consistent.
        return self.space.flatten(self.space.assemble(flat))

    # ---------------------------------------------------------- observations
    def _observe_intermediate(self, trial_id: str, result: dict) -> None:
        if trial_id in self._base_trials:
            self._base.observe_intermediate(trial_id, result)
        if trial_id in self._trial_chain:
            self._record(trial_id, result)

    def _record(self, trial_id: str, result: dict) -> None:
        """Keep a chain trial's metric at each budget (Tune's ``training_iteration``)."""
        budget, value = finite_number(result.get(BUDGET)), finite_number(result.get(self._metric))
        if budget is not None and value is not None:
            sign = 1.0 if self._mode == "min" else -1.0
            self.__dict__.setdefault("_curves", {}).setdefault(trial_id, {})[int(budget)] = \
                sign * value

    def _at_budget(self, chain: Chain, chain_id: int, curve: dict[int, float],
                   f: float) -> float:
        """``f`` on the scale of ``chain.best_f``: compared at the budget both trials reached.

        An early-stopping scheduler (ASHA, Hyperband, median stopping) ends some trials after
        fewer iterations than others, and a metric that improves with training makes a trial
        stopped early look worse than the chain's best that ran longer, whatever its point.
        With the best's curve ``b`` (its signed metric by budget), the new point's value at the
        last budget ``c`` both curves have, not beyond either's end, is moved by the best's own
        distance there from ``best_f`` (0 at the best's own last budget, unless it was itself
        compared at a shorter one):

            f' = curve(c) + (best_f - b(c))

        so that ``f' < best_f`` exactly when ``curve(c) < b(c)``. Trials that all run to the
        same budget (FIFO) give ``f' = f``.
        """
        best_curve = self.__dict__.get("_best_curves", {}).get(chain_id)
        if not best_curve or not curve:
            return f
        limit = min(max(curve), max(best_curve))
        common = [t for t in curve if t <= limit and t in best_curve]
        if not common:
            return f
        c = max(common)
        return curve[c] + (chain.best_f - best_curve[c])

    def _observe(self, trial_id: str, result: dict | None, error: bool) -> None:
        self._infer(result)
        if trial_id in self._base_trials:
            self._base_trials.discard(trial_id)
            self._base.observe(trial_id, result, error)
        if trial_id in self._told_trials:
            self._told_trials.discard(trial_id)
            self._base.tell(self._live[trial_id], None if result is None else
                            result.get(self._metric))
        if trial_id in self._given_trials and trial_id not in self._trial_chain:
            self._adopt_start(trial_id, result)
        self._given_trials.discard(trial_id)
        chain_id = self._trial_chain.pop(trial_id, None)
        if chain_id is None:
            return
        chain = self._chains[chain_id]
        z = chain.pending[trial_id][0]
        f, grad = self._objective(result, z) if result is not None else (None, None)
        if result is not None:
            self._record(trial_id, result)
        curve = self.__dict__.setdefault("_curves", {}).pop(trial_id, {})
        if f is not None:
            f = self._at_budget(chain, chain_id, curve, f)
        if result is not None and grad is None and not self._gradients_seen and not self._warned:
            logger.warning("HypergradientSearcher: results carry no %s<name> for %s; searching "
                           "like the %s base searcher", HYPERGRAD_PREFIX,
                           [p.key for p in self._params], self.base_name)
            self._warned = True
        trust = 1.0
        if grad is not None:
            self._gradients_seen = True
            z = self._reported_point(result, z)
            trust = gradient_trust(finite_number(result.get(CONVERGED)),
                                   finite_number(result.get(RESIDUAL)))
        accepted = chain.complete(trial_id, z, f, grad, trust)
        if accepted and curve:
            self.__dict__.setdefault("_best_curves", {})[chain_id] = curve
        if self.holdout_metric and result is not None:
            watched = finite_number(result.get(self.holdout_metric))
            sign = 1.0 if self._mode == "min" else -1.0
            chain.watch(None if watched is None else sign * watched, accepted)
        if chain.done and not chain.pending and chain not in self.retired:
            self.retired.append(chain)

    def _adopt_start(self, trial_id: str, result: dict | None) -> None:
        """A point to evaluate that ran before the differentiable parameters were known (a
        plain Tune space: they are inferred from its own result) starts a chain there, with
        that result as its first evaluation, instead of the box's middle."""
        flat = self._live.get(trial_id)
        alive = [c for c in self._chains.values() if not c.done]
        if (result is None or not self._params or flat is None or len(alive) >= self.max_chains
                or not all(p.key in flat for p in self._params)):
            return
        self._start_chain(trial_id, flat)

    def _reject(self, trial_id: str) -> None:
        self._given_trials.discard(trial_id)
        chain_id = self._trial_chain.pop(trial_id, None)
        if chain_id is not None:  # a chain point broke a forbidden clause: shrink and retry
            self._chains[chain_id].cancel(trial_id)
        self._told_trials.discard(trial_id)
        if trial_id in self._base_trials:
            self._base_trials.discard(trial_id)
            self._base.reject(trial_id, self._worst)
            if chain_id is not None:  # the start itself broke the space: no chain
                del self._chains[chain_id]

    def _objective(self, result: dict, u: np.ndarray) -> tuple[float | None, np.ndarray | None]:
        value = finite_number(result.get(self._metric))
        if value is None:
            return None, None
        sign = 1.0 if self._mode == "min" else -1.0
        grads = []
        for p, zi in zip(self._params, u, strict=True):
            g = reported_hypergrad(result, p.key)
            if g is None:
                if nonfinite_number(result.get(hypergrad_key(p.key))):
                    self._say_once("nonfinite", "HypergradientSearcher: a trial reported %s=%r "
                                   "with a finite %s; that step uses the metric alone (further "
                                   "cases are not logged)", hypergrad_key(p.key),
                                   result.get(hypergrad_key(p.key)), self._metric)
                return sign * value, None
            grads.append(sign * g * box.box_derivative(p, float(zi)))  # dL/dz = dL/dx dx/dz
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
                out[i] = box.to_box(p, x)
        return out

    def _adopted(self, trial_id: str, flat: dict[str, Any]) -> None:
        pass  # a trial from before a restore: its result still reaches the base searcher

    def _tell(self, flat: dict[str, Any], value: float | None) -> None:
        """An evaluated point: the base searcher learns it, and the best ones start the next
        chains (their hypergradient is unknown, so a chain's first trial evaluates it again)."""
        self._base.tell(flat, value)
        if value is None:
            return
        sign = 1.0 if self._mode == "min" else -1.0
        self._seeds.append((sign * value, dict(flat)))
        self._seeds.sort(key=lambda item: item[0])
