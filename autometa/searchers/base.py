"""The adapter every autometa searcher shares: a Ray ``Searcher`` over an autometa :class:`Space`.

Subclasses only say how to *propose* flat values and how to *observe* results;
this class turns proposals into trial configs (constants filled in, inactive
parameters handled), rejects and redraws proposals that break the space
(forbidden combinations, truncated bounds), keeps non-finite metrics away from
the underlying model, and saves/restores its whole state for Tune's experiment
checkpoints.
"""

from __future__ import annotations

import logging
from typing import Any

from ray import cloudpickle
from ray.tune.search import Searcher

from autometa.space import ConstraintViolation, Space
from autometa.trial.keys import finite_number

logger = logging.getLogger(__name__)


def as_space(space: Any) -> Space | None:
    """An autometa :class:`Space` from what a user may pass as ``space=``: a Space, a Tune
    ``param_space`` dict (``tune.loguniform(...)`` values), or a space document (a dict with
    ``parameters``).

    Raises:
        TypeError: anything else.
    """
    if space is None or isinstance(space, Space):
        return space
    if isinstance(space, dict):
        if "parameters" in space:
            from autometa.space import space_from_dict

            return space_from_dict(space)
        from autometa.convert.tune import from_tune

        return from_tune(space)
    raise TypeError(f"space must be an autometa Space, a Tune param_space dict or a space "
                    f"document with 'parameters', got {type(space).__name__}")


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
    """

    def __init__(self, space: Space | None = None, metric: str | None = None,
                 mode: str | None = None, seed: int | None = None,
                 max_resamples: int = 200) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self.space = as_space(space)
        self.seed = seed
        self.max_resamples = max_resamples
        self._live: dict[str, dict[str, Any]] = {}  # trial id -> flat values
        self._ready = False
        self._warned_nonfinite = False
        self._worst: float | None = None  # worst finite metric seen

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
        self._setup()
        self._ready = True

    def suggest(self, trial_id: str) -> dict | str | None:
        self._ensure_ready()
        problems: list[str] = []
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

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._live and not self._adopt(trial_id, result):
            return
        if self._finite(result):
            self._observe_intermediate(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._live and not self._adopt(trial_id, result):
            return
        usable = not error and result is not None and self._finite(result)
        if usable:
            value = result[self._metric]
            worse = max if self._mode == "min" else min
            self._worst = value if self._worst is None else worse(self._worst, value)
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
            logger.warning("%s: non-finite %s=%r is treated as a failed evaluation",
                           type(self).__name__, self._metric, value)
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
        with open(checkpoint_path, "wb") as handle:
            cloudpickle.dump(self.__dict__, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(cloudpickle.load(handle))

    def get_state(self) -> dict:
        return dict(self.__dict__)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)
