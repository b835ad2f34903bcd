"""Racing searchers: F-race and iterated racing (irace) as Tune ``Searcher`` s.

Design: one Tune trial per ``(candidate, instance)`` pair. The trial's config is the
candidate's plus ``instance_key: <instance>`` (e.g. ``seed: 3`` or ``fold: 3``), and its final
``metric`` is the candidate's score on that instance. A searcher, not a scheduler, because
Tune saves a searcher's state with every experiment checkpoint while it pickles a scheduler
only once at the start: an interrupted race resumes where it stopped after ``Tuner.restore``
(or ``autometa run --resume``), with every result and elimination kept. It also keeps blocks
aligned without pausing anything: the race hands out the next instance only when every alive
candidate has the current one (:mod:`autometa.racing.race`), so Tune simply waits.

A failed trial or a NaN/inf metric counts as the worst result on that instance.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from autometa.racing import Race, RaceSettings
from autometa.racing.sampling import parent_weights, sample_around
from autometa.searchers.base import SpaceSearcher
from autometa.searchers.specs import IteratedRaceSpec, RaceSpec
from autometa.space import Space
from autometa.trial.keys import finite_number

logger = logging.getLogger(__name__)


class RacingSearcher(SpaceSearcher):
    """F-race: race ``candidates`` configurations drawn from the space, then finish.

    Args:
        candidates: Configurations drawn at random from the space (``configs`` adds yours).
        configs: Trial configs to race besides (or instead of, with ``candidates: 0``) the drawn ones.
        min_instances: Instances every candidate sees before the first test.
        max_instances: Instances at most (the race ends there).
        alpha: Level of the tests.
        test: ``"friedman"`` (Friedman + Conover post hoc, one-sided, Holm-corrected: not
            irace's exact rule, see :mod:`autometa.racing.stats`), ``"wilcoxon"`` or ``"t"``
            (Friedman, then that paired test against the best), Holm-corrected.
        instance_key: Config key that tells a trial which instance to run (``seed``, ``fold``).
        instances: The instance values, in order (default ``0 .. max_instances - 1``).
        budget: Most trials in all.
        **kwargs: See :class:`SpaceSearcher`.

    Example:
        >>> from autometa.space import space_from_dict
        >>> space = space_from_dict({"parameters": {"x": {"type": "uniform", "low": 0, "high": 1}}})
        >>> s = RacingSearcher(space, metric="loss", mode="min", seed=0, candidates=3)
        >>> config = s.suggest("t1")
        >>> config["instance"], 0 <= config["x"] <= 1
        (0, True)
    """

    spec = RaceSpec

    def __init__(self, space: Space | None = None, metric: str | None = None,
                 mode: str | None = None, seed: int | None = None, candidates: int = 16,
                 configs: list[dict] | None = None, min_instances: int = 5,
                 max_instances: int = 10, alpha: float = 0.05, test: str = "friedman",
                 instance_key: str = "instance", instances: list | None = None,
                 budget: int | None = None, **kwargs: Any) -> None:
        super().__init__(space, metric, mode, seed, **kwargs)
        self.spec.check({
            "candidates": candidates, "configs": configs, "min_instances": min_instances,
            "max_instances": max_instances, "alpha": alpha, "test": test,
            "instance_key": instance_key, "instances": instances, "budget": budget})
        self.settings = RaceSettings(min_instances, max_instances, alpha, test)
        self.n_candidates, self.given = candidates, list(configs or [])
        self.instance_key = instance_key
        self.instances = list(instances) if instances is not None else list(range(max_instances))
        self.budget = budget

    # ----------------------------------------------------------------- setup
    def _setup(self) -> None:
        if self.instance_key in {p.key for p in self.space.searchable()}:
            raise ValueError(f"instance_key {self.instance_key!r} is a searchable parameter of "
                             "the space; racing sets it per trial")
        self._rng = np.random.default_rng(self.seed)
        self.configs: list[dict[str, Any]] = []   # every candidate ever raced (flat values)
        self.races: list[tuple[Race, list[int]]] = []  # each race and its candidates' indices
        self._pairs: dict[str, tuple[int, int]] = {}
        self._used = 0
        self._start_race(self._first_candidates())

    def _first_candidates(self) -> list[dict[str, Any]]:
        given = [self.space.flatten(c) for c in self.given] + self._to_evaluate
        self._to_evaluate = []
        return given + [self.space.sample_flat(self._rng) for _ in range(self.n_candidates)]

    def _point_to_evaluate(self, trial_id: str) -> None:
        return None  # points_to_evaluate are raced as the first candidates

    def add_evaluated_point(self, parameters: dict, value: float, error: bool = False,
                            pruned: bool = False, intermediate_values: list | None = None) -> None:
        """A result of one of the current race's candidates on one instance, evaluated
        elsewhere: it is recorded, so that pair is not run again.

        ``parameters`` must carry the instance key. A configuration that is not a candidate
        joins the race only before its first trial; later it is logged and left out (a race
        compares candidates on the same instances).

        Raises:
            ValueError: no instance key, an unknown instance, or a config outside the space.
        """
        self._ensure_ready()
        config = dict(parameters)
        if self.instance_key not in config:
            raise ValueError(f"add_evaluated_point: a race needs the instance the point ran on "
                             f"(parameters[{self.instance_key!r}])")
        instance = config.pop(self.instance_key)
        if instance not in self.instances:
            raise ValueError(f"add_evaluated_point: {self.instance_key}={instance!r} is not one "
                             f"of the instances {self.instances}")
        flat = self.checked_point(config, "add_evaluated_point")
        k = self.instances.index(instance)
        value = None if error else finite_number(value)
        if value is not None and self._mode == "max":
            value = -value
        race, indices = self.races[-1]
        for local, index in enumerate(indices):
            if self.configs[index] == flat and (local, k) not in race.pending:
                race.record(local, k, value)
                return
        if race.handed_out == 0 and not any(race.results):
            self.configs.append(flat)
            indices = indices + [len(self.configs) - 1]
            results = race.results + [{}]
            self.races[-1] = (Race(len(indices), self.settings, budget=race.budget,
                                   results=results), indices)
            self.race.record(len(indices) - 1, k, value)
            return
        logger.warning("%s: add_evaluated_point: %s is not a candidate of the running race; "
                       "left out", type(self).__name__, config)

    def _start_race(self, flats: list[dict[str, Any]], carried: list[int] = ()) -> None:
        """A race among the ``carried`` candidates (with their results) and new ``flats``."""
        indices = list(carried)
        for flat in flats:
            self.configs.append(flat)
            indices.append(len(self.configs) - 1)
        results = [dict(self._known.get(i, {})) for i in indices] if carried else []
        budget = None if self.budget is None else self.budget - self._used
        race = Race(len(indices), self.settings, budget=budget, results=results)
        self.races.append((race, indices))

    @property
    def _known(self) -> dict[int, dict[int, float]]:
        """Results of every candidate on every instance, over all races."""
        known: dict[int, dict[int, float]] = {}
        for race, indices in self.races:
            for local, index in enumerate(indices):
                known.setdefault(index, {}).update(race.results[local])
        return known

    @property
    def race(self) -> Race:
        return self.races[-1][0]

    def planned_trials(self, num_samples: int) -> None:
        return None  # candidates drop out as the race goes: at most ``budget`` trials

    # ------------------------------------------------------------- proposals
    def _propose(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.budget is not None and self._used >= self.budget:
            return None if self._pairs else Searcher.FINISHED
        pair = self.race.next_pair()
        if pair is None and self.race.finished and not self._pairs:
            if not self._next_race():
                return Searcher.FINISHED
            pair = self.race.next_pair()
        if pair is None:
            return None
        local, instance = pair
        index = self.races[-1][1][local]
        self._pairs[trial_id] = (local, instance)
        self._used += 1
        return dict(self.configs[index])

    def _next_race(self) -> bool:
        """Start the next race when there is one (iterated racing); F-race has none."""
        return False

    def suggest(self, trial_id: str) -> dict | str | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict) and trial_id in self._pairs:
            config[self.instance_key] = self.instances[self._pairs[trial_id][1]]
        return config

    def _observe(self, trial_id: str, result: dict | None, error: bool) -> None:
        pair = self._pairs.pop(trial_id, None)
        if pair is None:
            return
        value = None
        if result is not None and not error:
            raw = finite_number(result.get(self._metric))
            if raw is not None:
                value = raw if self._mode == "min" else -raw
        self.race.record(*pair, value)

    def _reject(self, trial_id: str) -> None:  # a candidate that broke the space: drop it
        pair = self._pairs.pop(trial_id, None)
        if pair is not None:
            self._used -= 1
            self.race.cancel(*pair)
            self.race.alive = [c for c in self.race.alive if c != pair[0]]

    # --------------------------------------------------------------- outcome
    def elites(self, n: int | None = None) -> list[dict[str, Any]]:
        """The current race's alive candidates as trial configs, best first."""
        race, indices = self.races[-1]
        ranking = race.ranking()[:n]
        return [self.space.assemble(self.configs[indices[c]]) for c in ranking]

    def best_config(self) -> dict[str, Any]:
        """The winner (so far) as a trial config, without the instance key."""
        return self.elites(1)[0]

    def survivors(self) -> list[dict[str, Any]]:
        """The last race's alive candidates as flat configs (dotted keys), best first."""
        race, indices = self.races[-1]
        return [dict(self.configs[indices[c]]) for c in race.ranking()]

    def end_reason(self) -> str | None:
        """Why the search ended, in words; None while it may go on."""
        if self.budget is not None and self._used >= self.budget and not self._pairs:
            return f"its budget of {self.budget} trials was used"
        return self.race.end_reason


class IteratedRacingSearcher(RacingSearcher):
    """irace: race, keep the elites, sample new candidates around them, race again.

    Each race after the first includes up to ``elites`` survivors of the last one, with their
    results (they are not evaluated again), and new candidates drawn by
    :func:`autometa.racing.sampling.sample_around` so that there are ``candidates`` in all.
    It finishes when ``budget`` trials have been run.

    Args:
        budget: Trials in all (``autometa run`` takes it from ``num_samples``).
        elites: Survivors carried into the next race.
        iterations: Expected number of races (sets how fast sampling narrows); default
            ``2 + log2(number of parameters)`` as irace.
        **kwargs: See :class:`RacingSearcher`.
    """

    spec = IteratedRaceSpec

    def __init__(self, *args: Any, budget: int | None = 200, elites: int = 3,
                 iterations: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, budget=budget, **kwargs)
        self.spec.check({"budget": budget, "elites": elites, "iterations": iterations})
        self.n_elites, self.iterations = elites, iterations

    def _setup(self) -> None:
        n_params = max(1, len(self.space.searchable()))
        self.iterations = self.iterations or int(2 + math.log2(n_params))
        self.iteration = 0
        super()._setup()

    def _next_race(self) -> bool:
        if self._used >= self.budget:
            return False
        race, indices = self.races[-1]
        elites = [indices[c] for c in race.ranking()[:self.n_elites]]
        if not elites:
            return False
        self.iteration += 1
        n_new = max(1, self.n_candidates + len(self.given) - len(elites))
        weights = parent_weights(len(elites))
        flats = []
        for _ in range(n_new):
            parent = self.configs[elites[self._rng.choice(len(elites), p=weights)]]
            flats.append(sample_around(self.space, parent, self._rng,
                                       min(self.iteration, self.iterations), self.iterations,
                                       n_new))
        self._start_race(flats, carried=elites)
        return True

    def end_reason(self) -> str | None:
        """Why irace ended (its budget, in words with the races it ran); None while it runs."""
        last = self.race.end_reason
        if self.budget is not None and self._used >= self.budget and not self._pairs:
            cut = (f"the last ended because {last}" if last else
                   "the last was cut short by the budget")
            return (f"its budget of {self.budget} trials was used, in {len(self.races)} "
                    f"races ({cut})")
        return None if last is None else f"its race {len(self.races)} ended because {last}"
