"""The adapter every autometa searcher shares: a Ray ``Searcher`` over an autometa :class:`Space`.

Subclasses only say how to *propose* flat values and how to *observe* results;
this class turns proposals into trial configs (constants filled in, inactive
parameters handled), rejects and redraws proposals that break the space
(forbidden combinations, truncated bounds), keeps non-finite metrics away from
the underlying model, runs ``points_to_evaluate`` first and hands evaluated points
(``add_evaluated_point``) to the model, and saves/restores its whole state for Tune's
experiment checkpoints.

**Composition contract.** A searcher that drives another one (the hypergradient searcher
and its base) uses only the public methods :meth:`SpaceSearcher.propose`,
:meth:`~SpaceSearcher.observe`, :meth:`~SpaceSearcher.observe_intermediate`,
:meth:`~SpaceSearcher.reject` and :meth:`~SpaceSearcher.tell`, in flat values and without
the space checks (the outer searcher makes them), as Optuna's samplers compose through
``sample_independent``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ray import cloudpickle
from ray.tune.search import Searcher

from autometa.convert.coerce import as_space
from autometa.searchers.specs import SearcherSpec
from autometa.space import ConstraintViolation, Space
from autometa.trial.keys import finite_number, nonfinite_number

logger = logging.getLogger(__name__)


class SpaceSearcher(Searcher):
    """Base class of autometa's searchers (a ``ray.tune.search.Searcher``).

    The space, metric and mode may be given now or later by Tune through
    :meth:`set_search_properties` (then the Tune ``param_space`` is read with
    :func:`autometa.convert.from_tune`).

    Args:
        space: The search space, or None to receive it from Tune.
        metric: Result key to optimize.
        mode: ``"min"`` or ``"max"``.
        seed: Seed for reproducible suggestions.
        max_resamples: Redraws allowed for one trial when proposals break the space.
        points_to_evaluate: Configurations to run first, in order (nested like a trial config,
            or flat with dotted keys); parameters they leave out are drawn from the space.
            Their results reach the model as evaluated points. Checked when the searcher is
            set up: an unknown key or a value outside the space is a ``ValueError``.
    """

    spec: type[SearcherSpec] = SearcherSpec
    """The declaration of this class's options and capabilities (a registry line names it)."""

    models_results = False
    """Whether results and evaluated points change later suggestions (a model-based searcher)."""

    def __init__(self, space: Space | None = None, metric: str | None = None,
                 mode: str | None = None, seed: int | None = None,
                 max_resamples: int = 200,
                 points_to_evaluate: list[dict] | None = None) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                 or not 0 <= seed < 2**32):
            raise ValueError(f"seed must be an integer in [0, 2**32 - 1], got {seed!r}")
        SearcherSpec.check({"max_resamples": max_resamples,
                            "points_to_evaluate": points_to_evaluate})
        super().__init__(metric=metric, mode=mode)
        self.space = as_space(space)
        self.seed = seed
        self.max_resamples = max_resamples
        self.points_to_evaluate = [dict(p) for p in points_to_evaluate or []]
        self._to_evaluate: list[dict[str, Any]] = []   # checked, filled flat points still to run
        self._given: dict[str, dict[str, Any]] = {}  # trial id -> flat point it runs
        self._live: dict[str, dict[str, Any]] = {}  # trial id -> flat values
        self._ready = False
        self._warned_nonfinite = False
        self._worst: float | None = None  # worst finite metric seen

    def planned_trials(self, num_samples: int) -> int | None:
        """How many trials this searcher runs when Tune asks for ``num_samples`` (-1: until
        it says it is finished): what a run's summary counts its finished trials against;
        None when the searcher decides as it goes (a race)."""
        return num_samples if num_samples > 0 else None

    # ----------------------------------------------------------- subclass hooks
    def _setup(self) -> None:
        """Build the underlying model once space, metric and mode are known."""

    def _propose(self, trial_id: str) -> dict[str, Any] | str | None:
        """Flat values for ``trial_id``, None (not now) or ``Searcher.FINISHED``."""
        raise NotImplementedError

    def _observe(self, trial_id: str, result: dict | None, error: bool) -> None:
        """Tell the model that ``trial_id`` finished (``error``: no usable metric)."""

    def _observe_intermediate(self, trial_id: str, result: dict) -> None:
        """Tell the model about an intermediate result (finite metric only)."""

    def _tell(self, flat: dict[str, Any], value: float | None) -> None:
        """Tell the model about an evaluated point (``value`` None: it failed).

        The default suits searchers that learn nothing from results (random, grid).
        """

    def _reject(self, trial_id: str) -> None:
        """Tell the model about a proposal that broke the space.

        It is reported as the worst result seen so far, so that a model-based searcher
        moves away from it (reported as failed, hyperopt's TPE keeps proposing the same
        forbidden point); before any result it is reported as failed.
        """
        if self._worst is None:
            self._observe(trial_id, None, True)
        else:
            self._observe(trial_id, {self._metric: self._worst, "training_iteration": 1}, False)

    # -------------------------------------------------------------- Tune API
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        if self.space is not None and config:
            return False  # Tune then reports that the space was given twice
        if self.space is None:
            if not config:
                return False
            from autometa.convert.tune import from_tune

            self.space = from_tune(config)
        if metric and not self._metric:
            self._metric = metric
        if mode and not self._mode:
            self._mode = mode
        return True

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        if self.space is None:
            raise RuntimeError(f"{type(self).__name__} has no search space: pass space= or give "
                               "Tune a param_space")
        if not self._metric or not self._mode:
            raise RuntimeError(f"{type(self).__name__} needs metric and mode (pass them here or "
                               "to tune.TuneConfig)")
        rng = np.random.default_rng(None if self.seed is None else self.seed + 7919)
        self._to_evaluate = [self.checked_point(p, f"points_to_evaluate[{i}]", rng)
                        for i, p in enumerate(self.points_to_evaluate)]
        self._setup()
        self._ready = True

    def checked_point(self, point: dict, where: str = "point",
                      rng: np.random.Generator | None = None) -> dict[str, Any]:
        """Flat values of a user's config, checked against the space
        (:meth:`Space.checked_point <autometa.space.Space.checked_point>`)."""
        return self.space.checked_point(point, where, rng)

    # -------------------------------------------------- composition contract
    def propose(self, trial_id: str) -> dict[str, Any] | str | None:
        """Flat values for ``trial_id`` (None: not now; ``Searcher.FINISHED``), unchecked.

        For a searcher that composes this one: it checks the values, runs the trial and then
        calls :meth:`observe` or :meth:`reject` with the same id.
        """
        self._ensure_ready()
        return self._propose(trial_id)

    def observe(self, trial_id: str, result: dict | None, error: bool = False) -> None:
        """``trial_id`` (from :meth:`propose`) finished; ``error``: no usable metric."""
        if not error and result is not None and finite_number(result.get(self._metric)) is not None:
            self._note_worst(result[self._metric])
        self._observe(trial_id, result, error)

    def observe_intermediate(self, trial_id: str, result: dict) -> None:
        """An intermediate result of ``trial_id`` (finite metric)."""
        self._observe_intermediate(trial_id, result)

    def reject(self, trial_id: str, worst: float | None = None) -> None:
        """The proposal for ``trial_id`` broke the space and will not run.

        Args:
            worst: The worst metric the composing searcher has seen (the model hears it as
                this trial's result, so it moves away).
        """
        if worst is not None:
            self._note_worst(worst)
        self._reject(trial_id)

    def tell(self, flat: dict[str, Any], value: float | None) -> None:
        """An evaluated point in flat values (``value`` None or non-finite: it failed)."""
        self._ensure_ready()
        self._tell(flat, finite_number(value))

    def _note_worst(self, value: Any) -> None:
        value = finite_number(value)
        if value is not None:
            worse = max if self._mode == "min" else min
            self._worst = value if self._worst is None else worse(self._worst, value)

    def add_evaluated_point(self, parameters: dict, value: float, error: bool = False,
                            pruned: bool = False, intermediate_values: list | None = None) -> None:
        """Hand the model a configuration evaluated elsewhere (Ray's ``Searcher`` API).

        Args:
            parameters: The trial config (nested, or flat with dotted keys); every active
                parameter must be given.
            value: Its metric (a non-finite value, or ``error``, counts as a failure).
            error, pruned: Whether it failed / was stopped early (a pruned point's value is
                used as it is).
            intermediate_values: Ignored.

        Raises:
            ValueError: a config outside the space.
        """
        self._ensure_ready()
        flat = self.checked_point(parameters, "add_evaluated_point")
        self._tell(flat, None if error else finite_number(value))

    def suggest(self, trial_id: str) -> dict | str | None:
        self._ensure_ready()
        problems: list[str] = []
        given = self._point_to_evaluate(trial_id)
        if given is not None:
            self._given[trial_id] = given
            self._live[trial_id] = given
            return self.space.assemble(given)
        for _ in range(self.max_resamples):
            flat = self._propose(trial_id)
            if flat is None or flat == Searcher.FINISHED:
                return flat
            try:
                config = self.space.assemble(flat)
                problems = self.space.problems(config)
            except ConstraintViolation as err:
                problems = [str(err)]
            if not problems:
                self._live[trial_id] = flat
                return config
            self._reject(trial_id)
        raise ConstraintViolation(
            f"{type(self).__name__}: {self.max_resamples} proposals in a row broke the space "
            f"({problems[0]}); are the forbidden clauses excluding almost everything?")

    def _point_to_evaluate(self, trial_id: str) -> dict[str, Any] | None:
        """The next of ``points_to_evaluate`` for ``trial_id``, or None when all have run.

        A subclass that starts something of its own at those points overrides this (and takes
        them from ``self._to_evaluate``).
        """
        return self._to_evaluate.pop(0) if self._to_evaluate else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._live and not self._adopt(trial_id, result):
            return
        if self._finite(result) and trial_id not in self._given:
            self._observe_intermediate(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._live and not self._adopt(trial_id, result):
            return
        usable = not error and result is not None and self._finite(result)
        if usable:
            self._note_worst(result[self._metric])
        given = self._given.pop(trial_id, None)
        if given is not None:
            self._tell(given, result[self._metric] if usable else None)
        else:
            self._observe(trial_id, result if usable else None, not usable)
        self._live.pop(trial_id, None)

    def _adopt(self, trial_id: str, result: dict | None) -> bool:
        """Take over a trial this searcher did not suggest (e.g. after a restore)."""
        config = (result or {}).get("config")
        if self.space is None or not isinstance(config, dict):
            return False
        flat = self.space.flatten(config)
        if self.space.problems(self.space.assemble(flat)):
            return False
        self._live[trial_id] = flat
        self._adopted(trial_id, flat)
        return True

    def _adopted(self, trial_id: str, flat: dict[str, Any]) -> None:
        """Register an adopted trial with the underlying model (default: nothing)."""

    def _finite(self, result: dict) -> bool:
        value = result.get(self._metric)
        ok = finite_number(value) is not None
        if not ok and self._metric in result and not self._warned_nonfinite:
            what = "non-finite" if nonfinite_number(value) else \
                f"not a number ({type(value).__name__})"
            logger.warning("%s: %s=%r is %s: treated as a failed evaluation",
                           type(self).__name__, self._metric, value, what)
            self._warned_nonfinite = True
        return ok

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return False  # let ConcurrencyLimiter do it

    # BOHB's scheduler talks to its searcher directly; forward when the model listens.
    def on_pause(self, trial_id: str) -> None:
        """Called by ``HyperBandForBOHB`` when it pauses a trial."""
        base = getattr(self, "_base", None)
        if self._ready and hasattr(base, "on_pause"):
            base.on_pause(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        """Called by ``HyperBandForBOHB`` when it resumes a trial."""
        base = getattr(self, "_base", None)
        if self._ready and hasattr(base, "on_unpause"):
            base.on_unpause(trial_id)

    # ------------------------------------------------------------ persistence
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:  # (the class named: see saved_in)
            cloudpickle.dump({**self.__dict__, "_saved_class": type(self).__qualname__}, handle)

    @classmethod
    def saved_in(cls, folder: str) -> SpaceSearcher | None:
        """The searcher of this class whose state Tune saved in the experiment ``folder``
        (its newest ``searcher-state-*.pkl``), to read what it decided after the run (a race's
        survivors, the hypergradient searcher's chains); None when there is none, it is
        another class's, or this environment cannot read it."""
        state = _saved_state(folder)
        if state is None or state.get("_saved_class") != cls.__qualname__:
            return None
        searcher = cls.__new__(cls)
        searcher.__dict__.update(state)
        return searcher

    @staticmethod
    def saved_objective(folder: str) -> tuple[str | None, str | None]:
        """The metric and mode of the autometa searcher whose state Tune saved in the
        experiment ``folder`` (a Tuner's own ``TuneConfig``, in plain Tune code); (None, None)
        when there is none or it cannot be read."""
        state = _saved_state(folder)
        if state is None or "_saved_class" not in state:
            return None, None
        metric, mode = state.get("_metric"), state.get("_mode")
        return (metric if isinstance(metric, str) else None,
                mode if mode in ("min", "max") else None)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(cloudpickle.load(handle))

    def get_state(self) -> dict:
        return dict(self.__dict__)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)


def _saved_state(folder: str) -> dict | None:
    """The newest ``searcher-state-*.pkl`` of an experiment folder, if it is a dict this
    environment can unpickle (what an autometa searcher saves)."""
    import glob
    import os

    # newest by name: Tune names them by session start (searcher-state-<date_time>.pkl),
    # and a resume copies the folder back, which changes the older files' mtimes
    files = sorted(glob.glob(os.path.join(folder, "searcher-state-*.pkl")))
    if not files:
        return None
    try:
        with open(files[-1], "rb") as handle:
            state = cloudpickle.load(handle)
    except Exception:  # noqa: BLE001 - a state this environment cannot unpickle
        return None
    return state if isinstance(state, dict) else None
