"""Ray's schedulers with state: a restored scheduler decides as the saved one would have."""

from __future__ import annotations

import pytest
from ray.tune.experiment import Trial

from autometa.schedulers.persist import StatefulScheduler, state_callbacks
from autometa.schedulers.resumable import (
    ResumableASHAScheduler,
    ResumableHyperBandForBOHB,
    ResumableHyperBandScheduler,
    ResumableMedianStoppingRule,
)


def _trials(n):
    return [Trial("__fake", trial_id=f"t{i}", stub=True) for i in range(n)]


@pytest.mark.parametrize("make", [
    lambda: ResumableASHAScheduler(metric="loss", mode="min", max_t=9, grace_period=1),
], ids=["asha"])
def test_restored_scheduler_decides_like_the_saved_one(make):
    saved, trials = make(), _trials(5)
    assert isinstance(saved, StatefulScheduler) and state_callbacks(saved)
    for t in trials[:4]:
        saved.on_trial_add(None, t)
    for step in (1, 2):
        for i, t in enumerate(trials[:4]):
            saved.on_trial_result(None, t, {"loss": float(i), "training_iteration": step,
                                            "time_total_s": float(step)})
    restored = make()
    restored.set_state(saved.get_state())
    again = _trials(5)
    for t in again[:4]:  # Tune re-adds the restored trials (new objects, same ids)
        restored.on_trial_add(None, t)
    fresh = make()
    for scheduler, t in ((saved, trials[4]), (restored, again[4]), (fresh, _trials(5)[4])):
        scheduler.on_trial_add(None, t)
    late = {"loss": 10.0, "training_iteration": 2, "time_total_s": 2.0}
    decision = saved.on_trial_result(None, trials[4], late)
    assert decision == "STOP"  # worse than everything recorded
    assert restored.on_trial_result(None, again[4], late) == decision
    assert fresh.on_trial_result(None, _trials(5)[4], late) == "CONTINUE"  # what restore adds


def test_restored_hyperband_keeps_brackets_with_the_readded_trials():
    saved = ResumableHyperBandScheduler(metric="loss", mode="min", max_t=9, reduction_factor=3)
    for t in _trials(6):
        saved.on_trial_add(None, t)
    for i, (t, (bracket, _)) in enumerate(saved._trial_info.items()):
        bracket.update_trial_stats(t, {"training_iteration": 1, "loss": float(i)})
    restored = ResumableHyperBandScheduler(metric="loss", mode="min", max_t=9,
                                           reduction_factor=3)
    restored.set_state(saved.get_state())
    again = _trials(6)
    for t in again:
        restored.on_trial_add(None, t)
    sizes = [[len(b._live_trials) for b in band] for band in restored._hyperbands]
    assert sizes == [[len(b._live_trials) for b in band] for band in saved._hyperbands]
    assert set(restored._trial_info) == set(again)  # the re-added objects, not copies
    live = [t for band in restored._hyperbands for b in band for t in b._live_trials]
    assert all(any(t is a for a in again) for t in live)

    def results(scheduler):
        return {t.trial_id: r for band in scheduler._hyperbands for b in band
                for t, r in b._live_trials.items()}

    assert results(restored) == results(saved) and all(results(saved).values())


def test_restored_median_rule_keeps_each_trials_results():
    saved = ResumableMedianStoppingRule(metric="loss", mode="min")
    trials = _trials(3)
    for t in trials:
        saved.on_trial_add(None, t)
    for i, t in enumerate(trials):  # what on_trial_result records, without a controller
        saved._results[t].append({"loss": float(i), "time_total_s": 1.0})
    saved._last_pause[trials[0]] = 1.0
    restored = ResumableMedianStoppingRule(metric="loss", mode="min")
    restored.set_state(saved.get_state())
    again = _trials(3)
    for t in again:
        restored.on_trial_add(None, t)
    assert {t.trial_id: r for t, r in restored._results.items()} == \
        {t.trial_id: r for t, r in saved._results.items()}
    assert all(any(t is a for a in again) for t in restored._results)
    assert restored._last_pause[again[0]] == 1.0 and restored._last_pause[again[1]] == -float("inf")


def _bohb():
    return ResumableHyperBandForBOHB(metric="loss", mode="min", max_t=4, reduction_factor=2)


def _saved_bohb(n):
    """A BOHB scheduler whose first bracket holds ``n`` trials, each with one result."""
    saved, trials = _bohb(), _trials(n)
    for t in trials:
        saved.on_trial_add(None, t)
    for i, t in enumerate(trials):
        bracket = saved._trial_info[t][0]
        bracket.update_trial_stats(t, {"training_iteration": 1, "loss": float(i)})
    return saved, trials


def _live(scheduler):
    return {t.trial_id for band in scheduler._hyperbands for b in band if b
            for t in b._live_trials}


def test_restore_reconciles_brackets_with_the_statuses_tune_restored():
    # The kill fell between the two writes: the scheduler's state says t0 and t1 are live,
    # Tune's says t0 finished meanwhile; the scheduler had stopped t2, Tune resumes it.
    saved, trials = _saved_bohb(4)
    bracket = saved._trial_info[trials[2]][0]
    bracket.cleanup_trial(trials[2])  # what stopping t2 does to its bracket
    assert _live(saved) == {"t0", "t1", "t3"}
    restored = _bohb()
    restored.set_state(saved.get_state())
    again = _trials(5)  # t4: added after the scheduler's state was saved
    again[0].set_status(Trial.TERMINATED)
    for t in [again[4], *again[:4]]:  # Tune re-adds by last result time, not by id
        restored.on_trial_add(None, t)
    assert restored._saved_state is None  # the state was put back, not dropped
    assert _live(restored) == {"t1", "t3", "t4"}  # t0 finished, t2 stopped, t4 added
    assert restored._to_stop == {again[2]}
    result = {"training_iteration": 2, "loss": 0.0, "time_total_s": 2.0}
    assert restored.on_trial_result(None, again[2], result) == "STOP"
    assert not restored._to_stop
    # the re-added objects are what the brackets hold (Ray asserts it on every result)
    for t in (again[1], again[3], again[4]):
        assert t in restored._trial_info[t][0]._live_trials


def test_a_failed_trial_that_the_restore_retries_joins_a_bracket_again():
    saved, trials = _saved_bohb(4)
    saved._failed = {"t1"}  # what on_trial_error records
    saved._trial_info[trials[1]][0].cleanup_trial(trials[1])
    restored = _bohb()
    restored.set_state(saved.get_state())
    again = _trials(4)
    for t in again:
        restored.on_trial_add(None, t)
    assert "t1" in _live(restored) and not restored._to_stop and not restored._failed


def test_a_saved_trial_that_is_not_readded_falls_back_to_a_fresh_scheduler(caplog):
    saved, _ = _saved_bohb(4)
    restored = _bohb()
    restored.set_state(saved.get_state())
    again = _trials(3)  # t3 is missing from Tune's restored trials
    again[0].set_status(Trial.TERMINATED)
    for t in again:
        restored.on_trial_add(None, t)
    assert restored._saved_state is not None  # still waiting for t3
    with caplog.at_level("WARNING", logger="autometa"):
        restored.choose_trial_to_run(None)  # the first other hook: t3 will not come
    assert "not restored" in caplog.text and "t3" in caplog.text
    assert _live(restored) == {"t1", "t2"}  # the unfinished ones, in fresh brackets


def test_a_trial_ending_by_itself_does_not_strand_paused_ones(ray_session, storage):
    """A trial that ends on its own while the others of its bracket wait at the last milestone
    finishes the bracket; Ray's HyperBandScheduler then left them PAUSED forever (it hangs on
    this run). (``bohb``'s scheduler shares the fix; it needs the BOHB searcher to run.)"""
    import time

    from ray import tune

    def trainable(config):
        for _ in range(config["iterations"]):
            tune.report({"loss": config["x"]})

    start = time.monotonic()
    results = tune.Tuner(
        trainable,
        param_space={"x": tune.grid_search([round(0.1 * i, 1) for i in range(1, 10)]),
                     # the third best ends after 2 iterations, before the milestone at 3
                     "iterations": tune.sample_from(lambda c: 2 if c["x"] == 0.3 else 9)},
        tune_config=tune.TuneConfig(scheduler=ResumableHyperBandScheduler(
            metric="loss", mode="min", max_t=9, reduction_factor=3),
                                    time_budget_s=90, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, name="strand",
                                  verbose=0)).fit()
    assert time.monotonic() - start < 80, "the run waited for its time budget: trials stranded"
    by_x = {r.config["x"]: r.metrics["training_iteration"] for r in results}
    assert by_x[0.1] == by_x[0.2] == 9 and by_x[0.3] == 2


def _controller(scheduler, storage):
    """A real Tune controller over four trials the real BOHB searcher suggested."""
    from ray.train._internal.storage import StorageContext
    from ray.tune import register_trainable
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search import SearchGenerator

    from autometa.searchers.bohb import BOHBSearcher
    from autometa.space import space_from_text

    register_trainable("stranded", lambda config: None)
    context = StorageContext(storage_path=storage, experiment_dir_name="stranded")
    searcher = BOHBSearcher(space_from_text("parameters: {x: {type: uniform, low: 0, high: 1}}"),
                            metric="loss", mode="min", seed=0)
    controller = TuneController(scheduler=scheduler, storage=context,
                                search_alg=SearchGenerator(searcher))
    for i in range(4):
        trial = Trial("stranded", config=searcher.suggest(f"t{i}"), trial_id=f"t{i}",
                      storage=context)
        trial.init_local_path()
        controller.add_trial(trial)
    return controller


def _run_as_tune_does(controller, scheduler, before=lambda: None, steps=50):
    """Tune's loop, one trial at a time: run the chosen trial until its scheduler pauses or
    stops it (loss = the trial's number; the trainable ends at max_t = 4). Returns each
    trial's iterations, or None when nothing was chosen while trials were left unfinished."""
    done = {t: 0 for t in controller.get_trials()}
    for _ in range(steps):
        before()
        trial = scheduler.choose_trial_to_run(controller)
        if trial is None:
            return {t.trial_id: n for t, n in done.items()} if controller.is_finished() else None
        while True:
            controller._set_trial_status(trial, Trial.RUNNING)  # (Tune's own bookkeeping)
            done[trial] += 1
            decision = scheduler.on_trial_result(controller, trial, {
                "training_iteration": done[trial], "time_total_s": float(done[trial]),
                "loss": float(trial.trial_id[1:])})
            if decision == "PAUSE":
                controller._set_trial_status(trial, Trial.PAUSED)
                break
            if decision == "STOP" or done[trial] == 4:
                controller.stop_trial(trial)
                break
    raise AssertionError("the loop did not end")


def test_paused_trials_no_bracket_would_resume_are_resumed_or_stopped(ray_session, storage):
    """What a driver killed between the scheduler's and Tune's writes once left after the
    restore (seen in the kill campaign, bohb): the trial the bracket kept at its last halving is
    paused but no longer due to resume, and a trial the bracket had stopped is paused again.
    Ray's scheduler then chooses nothing, for ever; this one resumes the first and stops the
    second (the fix is shared with ``hyperband``'s scheduler)."""
    from ray.tune.schedulers import HyperBandForBOHB

    def strand(controller, scheduler):
        def before():
            bracket = scheduler._trial_info[controller.get_trials()[0]][0]
            if bracket._cumul_r == 4 and bracket.trials_to_unpause:  # just halved to 4
                kept, = bracket.trials_to_unpause
                bracket.trials_to_unpause.clear()
                stopped = next(t for t in controller.get_trials()
                               if t.status == Trial.TERMINATED)
                controller._live_trials.add(stopped)
                controller._set_trial_status(stopped, Trial.PAUSED)
                stranded.extend([kept, stopped])
        return before

    for cls, ends in ((HyperBandForBOHB, False), (ResumableHyperBandForBOHB, True)):
        stranded = []
        scheduler = cls(metric="loss", mode="min", max_t=4, reduction_factor=2)
        controller = _controller(scheduler, storage)
        assert _run_as_tune_does(controller, scheduler) is not None  # unstranded: it ends
        scheduler = cls(metric="loss", mode="min", max_t=4, reduction_factor=2)
        controller = _controller(scheduler, storage)
        ran = _run_as_tune_does(controller, scheduler, strand(controller, scheduler))
        assert len(stranded) == 2, "the state was not reached"
        assert (ran is not None) == ends, cls.__name__
    kept, stopped = stranded
    assert all(t.status == Trial.TERMINATED for t in controller.get_trials())
    assert ran[kept.trial_id] == 4 and ran[stopped.trial_id] == 2  # resumed; not run again
