"""Ray's early-stopping schedulers with their state kept across ``Tuner.restore``.

Tune pickles a scheduler once, when the experiment starts. After a restore, Ray's
``ASHAScheduler``, ``HyperBandScheduler``, ``HyperBandForBOHB`` and ``MedianStoppingRule``
begin again empty: ASHA and the median rule forget every result they compared against, and
the synchronous Hyperband schedulers put the restored trials into new brackets where a trial
that was PAUSED at a milestone is never chosen to run again, so the resumed search hangs.

:class:`ResumableMixin` gives them ``get_state``/``set_state`` for
:class:`autometa.schedulers.persist.SchedulerStateCallback`, which Tune checkpoints with the
experiment. The state is the scheduler's own attributes, pickled with each ``Trial`` replaced
by its id; after a restore it is put back once Tune has re-added every trial it mentions,
with the ids mapped to the re-added ``Trial`` objects, so brackets, rungs and paused trials
continue as they were.

The scheduler's state and Tune's trial statuses are saved at slightly different moments (a
driver killed between the two writes), so a restore reconciles them: for the Hyperband
schedulers, a trial Tune has finished leaves its bracket, a trial the scheduler had stopped but
Tune resumes is stopped again, and a failed trial that Tune retries joins a bracket afresh.
"""

from __future__ import annotations

import io
import logging
import pickle
from typing import Any

from ray import cloudpickle
from ray.tune.experiment import Trial
from ray.tune.schedulers import (
    ASHAScheduler,
    HyperBandForBOHB,
    HyperBandScheduler,
    MedianStoppingRule,
    TrialScheduler,
)

logger = logging.getLogger("autometa")
_OWN = ("_saved_state", "_saved_ids", "_readded", "_deferred", "_to_stop")
_FINISHED = (Trial.TERMINATED, Trial.ERROR)


class _TrialsAsIds(cloudpickle.Pickler):  # cloudpickle: e.g. defaultdict(lambda: ...)
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.ids: set[str] = set()

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Trial):
            self.ids.add(obj.trial_id)
            return ("trial", obj.trial_id)
        return None


class _IdsAsTrials(pickle.Unpickler):
    def __init__(self, data: bytes, trials: dict[str, Trial]) -> None:
        super().__init__(io.BytesIO(data))
        self.trials = trials

    def persistent_load(self, pid: Any) -> Trial:
        return self.trials[pid[1]]  # KeyError: a trial Tune did not re-add


class ResumableMixin:
    """``get_state``/``set_state`` for a Ray ``TrialScheduler`` (put first in the bases)."""

    _saved_state: bytes | None = None

    def get_state(self) -> dict[str, Any]:
        """The scheduler's attributes (not its functions), trials as ids."""
        if self._saved_state is not None:  # restored but not yet put back: keep it
            return {"pickled": self._saved_state, "trial_ids": sorted(self._saved_ids)}
        state = {k: v for k, v in vars(self).items() if k not in _OWN and not callable(v)}
        buffer = io.BytesIO()
        pickler = _TrialsAsIds(buffer)
        pickler.dump(state)
        return {"pickled": buffer.getvalue(), "trial_ids": sorted(pickler.ids)}

    def set_state(self, state: dict[str, Any]) -> None:
        """Keep ``state`` until Tune has re-added the trials it mentions."""
        self._saved_state, self._saved_ids = state["pickled"], set(state["trial_ids"])
        self._readded: dict[str, Trial] = {}
        self._deferred: list[tuple[Any, Trial]] = []  # re-added trials the state does not know
        if not self._saved_ids:
            self._put_back()

    def _put_back(self) -> None:
        data, self._saved_state = self._saved_state, None
        try:
            vars(self).update(_IdsAsTrials(data, self._readded).load())
        except KeyError as missing:
            logger.warning("scheduler state not restored (trial %s was not re-added); "
                           "it starts again from the unfinished trials", missing)
            self._deferred[:0] = [(None, t) for t in self._readded.values()
                                  if t.status not in _FINISHED]
        else:
            self._reconcile(list(self._readded.values()))
        deferred, self._deferred = self._deferred, []
        for controller, trial in deferred:
            super().on_trial_add(controller, trial)  # type: ignore[misc]

    def _reconcile(self, readded: list[Trial]) -> None:
        """Make the restored state agree with the statuses Tune restored (default: nothing)."""

    def _ready(self) -> None:
        if self._saved_state is not None:  # a hook before every saved trial came back
            self._put_back()

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        if self._saved_state is not None:
            if trial.trial_id in self._saved_ids:
                self._readded[trial.trial_id] = trial
                if len(self._readded) == len(self._saved_ids):
                    self._put_back()
            else:  # newer than the saved state: added once the state is back
                self._deferred.append((tune_controller, trial))
            return
        super().on_trial_add(tune_controller, trial)  # type: ignore[misc]

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        self._ready()
        return super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self._ready()
        super().on_trial_complete(tune_controller, trial, result)  # type: ignore[misc]

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._ready()
        super().on_trial_error(tune_controller, trial)  # type: ignore[misc]

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._ready()
        super().on_trial_remove(tune_controller, trial)  # type: ignore[misc]

    def choose_trial_to_run(self, tune_controller: Any, *args: Any, **kwargs: Any) -> Any:
        self._ready()
        return super().choose_trial_to_run(tune_controller, *args, **kwargs)  # type: ignore[misc]


class _BracketsReconciled(ResumableMixin):
    """Restored Hyperband brackets made to agree with the restored trial statuses (and
    brackets that move on when a trial ends by itself between milestones).

    A bracket waits for each of its live trials to reach its milestone, so a live trial that
    Tune has finished would hold the bracket forever, and an unfinished trial outside every
    bracket would never be chosen to run. Ray's ``_Bracket`` asserts that a reporting trial is
    live in it.
    """

    _to_stop: set[Trial] = frozenset()  # type: ignore[assignment]

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._ready()
        self._failed = getattr(self, "_failed", set()) | {trial.trial_id}  # saved with the state
        super().on_trial_error(tune_controller, trial)

    def _reconcile(self, readded: list[Trial]) -> None:
        self._to_stop = set()
        failed = self._failed = set(getattr(self, "_failed", ()))
        for trial in readded:
            bracket = self._trial_info[trial][0] if trial in self._trial_info else None
            live = bracket is not None and trial in bracket._live_trials
            if trial.status in _FINISHED:
                if live:  # finished after the scheduler's state was saved
                    bracket.cleanup_trial(trial)
            elif bracket is None or trial.trial_id in failed:  # e.g. failed, retried now:
                failed.discard(trial.trial_id)  # a fresh start in a bracket
                self._deferred.append((None, trial))
            elif not live:  # the scheduler had stopped it
                self._to_stop.add(trial)
        if self._to_stop:
            logger.info("scheduler: %d trial(s) it had stopped before the restore are stopped "
                        "again: %s", len(self._to_stop), sorted(t.trial_id for t in self._to_stop))

    def choose_trial_to_run(self, tune_controller: Any, *args: Any, **kwargs: Any) -> Any:
        self._ready()
        for trial in list(self._to_stop):
            self._to_stop.discard(trial)
            if trial.status in (Trial.PENDING, Trial.PAUSED):
                tune_controller.stop_trial(trial)
        chosen = super().choose_trial_to_run(tune_controller, *args, **kwargs)
        if chosen is None and tune_controller is not None:
            chosen = self._unstrand(tune_controller)
        return chosen

    def _unstrand(self, tune_controller: Any) -> Trial | None:
        """With nothing running or pending, the PAUSED trials no bracket will ever resume.

        Ray resumes a paused trial only from its bracket's ``trials_to_unpause``, so a trial
        paused below its bracket's milestone but not listed there, or paused and live in no
        bracket, waits forever, and so does Tune (a driver killed between the scheduler's and
        Tune's writes left both after a restore). The first is what the bracket decided to
        continue: it is listed and returned; the second is what a bracket had stopped: it is
        stopped.
        """
        trials = tune_controller.get_trials()
        if any(t.status in (Trial.RUNNING, Trial.PENDING) for t in trials):
            return None
        chosen = None
        for trial in trials:
            if trial.status != Trial.PAUSED:
                continue
            bracket = self._trial_info[trial][0] if trial in self._trial_info else None
            if bracket is None or trial not in bracket._live_trials:
                logger.info("scheduler: trial %s was paused in no bracket; stopped",
                            trial.trial_id)
                tune_controller.stop_trial(trial)
            elif trial not in bracket.trials_to_unpause and bracket.continue_trial(trial):
                logger.info("scheduler: trial %s was paused below its bracket's milestone "
                            "and not due to resume; resumed", trial.trial_id)
                self._unpause_trial(tune_controller, trial)
                bracket.trials_to_unpause.add(trial)
                chosen = chosen or trial
        return chosen

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._ready()
        if trial not in self._trial_info:  # in no bracket (Ray's would raise KeyError)
            return
        bracket = self._trial_info[trial][0]
        super().on_trial_remove(tune_controller, trial)
        # A trial that ends by itself can be the last one a bracket waited for: the bracket is
        # then finished, and Ray leaves the trials paused at its last milestone paused forever.
        if bracket.finished() and not bracket.is_being_processed:
            bracket.is_being_processed = True  # their removals must not come back here
            try:
                bracket.cleanup_full(tune_controller)
            finally:
                bracket.is_being_processed = False

    def _process_bracket(self, tune_controller: Any, bracket: Any) -> str:
        # Ray sets ``is_being_processed`` to keep a removal during the processing from
        # processing the bracket again, and never clears it: a removal after the bracket's
        # first halving then no longer moves the bracket on. Clear it once the processing is
        # done.
        try:
            return super()._process_bracket(tune_controller, bracket)
        finally:
            bracket.is_being_processed = False

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        self._ready()
        if trial in self._to_stop:  # started before it could be stopped
            self._to_stop.discard(trial)
            return TrialScheduler.STOP
        return super().on_trial_result(tune_controller, trial, result)


class ResumableASHAScheduler(ResumableMixin, ASHAScheduler):
    """Ray's ``ASHAScheduler`` whose rungs survive ``Tuner.restore``."""


class ResumableHyperBandScheduler(_BracketsReconciled, HyperBandScheduler):
    """Ray's ``HyperBandScheduler`` whose brackets survive ``Tuner.restore``."""


class ResumableHyperBandForBOHB(_BracketsReconciled, HyperBandForBOHB):
    """Ray's ``HyperBandForBOHB`` whose brackets survive ``Tuner.restore``."""


class ResumableMedianStoppingRule(ResumableMixin, MedianStoppingRule):
    """Ray's ``MedianStoppingRule`` whose recorded results survive ``Tuner.restore``."""
