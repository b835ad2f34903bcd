"""Scheduler state that survives ``Tuner.restore``.

Tune saves a searcher's state with every experiment checkpoint, but pickles the scheduler
only once, when the experiment starts: after ``Tuner.restore`` a scheduler is back in its
initial state. Tune does save and restore the state of *callbacks* with every experiment
checkpoint (``Callback.get_state``/``set_state``), so a scheduler that can describe its state
(``get_state()``/``set_state(state)``) is paired with a :class:`SchedulerStateCallback`.
Both are pickled together into the experiment, so after a restore the callback hands the
saved state to the restored scheduler before Tune re-adds the trials.

    scheduler = make_scheduler("hypergradient_pbt", space=space)
    tune.Tuner(..., tune_config=tune.TuneConfig(scheduler=scheduler),
               run_config=tune.RunConfig(callbacks=state_callbacks(scheduler)))

``autometa run`` adds the callback itself.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ray.tune import Callback


@runtime_checkable
class StatefulScheduler(Protocol):
    """A scheduler that can save and restore the state it needs."""

    def get_state(self) -> dict[str, Any]:
        """A picklable description of the scheduler's state."""

    def set_state(self, state: dict[str, Any]) -> None:
        """Take over a state from :meth:`get_state` (called before trials are re-added)."""


class SchedulerStateCallback(Callback):
    """Saves ``scheduler``'s state with each experiment checkpoint; restores it on resume."""

    def __init__(self, scheduler: StatefulScheduler) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any]:
        return {"scheduler": type(self.scheduler).__name__, "state": self.scheduler.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("scheduler") == type(self.scheduler).__name__:
            self.scheduler.set_state(state["state"])


def state_callbacks(scheduler: Any) -> list[Callback]:
    """``[SchedulerStateCallback(scheduler)]`` when the scheduler has state to keep, else ``[]``."""
    return [SchedulerStateCallback(scheduler)] if isinstance(scheduler, StatefulScheduler) else []
