"""Ray's schedulers with state: a restored scheduler decides as the saved one would have."""

from __future__ import annotations

import pytest
from ray.tune.experiment import Trial

from autometa.schedulers.persist import StatefulScheduler, state_callbacks
from autometa.schedulers.resumable import (
    ResumableASHAScheduler,
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
