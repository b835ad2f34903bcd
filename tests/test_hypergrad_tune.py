"""The in-trial loop inside real Tune trials: result keys, checkpoints, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
from ray import tune

from autometa.launch.durable import DurableStateCallback
from autometa.trainables.digits_logreg import train_digits_logreg


def _fit(config, storage, name, max_failures=0):
    # DurableStateCallback: a retried trial's history keeps its reports from before the failure
    # (Tune's result loggers alone may copy older results back over them)
    return tune.Tuner(
        train_digits_logreg, param_space=config,
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0,
                                  callbacks=[DurableStateCallback()],
                                  failure_config=tune.FailureConfig(max_failures=max_failures)),
    ).fit()


def test_trial_reports_hparams_and_hypergrads_and_learns(ray_session, storage):
    # two splits of the digits (split_seed) in one run: each learns, and they are other data
    config = {"penalty": 0.05, "hypersteps": 4, "outer_lr": 0.5,
              "split_seed": tune.grid_search([0, 1])}
    results = _fit(config, storage, "learn")
    assert not results.errors and len(results) == 2
    for result in results:
        history = result.metrics_dataframe
        assert history["hyperstep"].tolist() == [1, 2, 3, 4, 4]  # the last report does not update
        assert {"hparams/penalty", "hypergrad/penalty", "hypergrad_converged"} <= set(history)
        assert history["hparams/penalty"].iloc[0] == pytest.approx(0.05, rel=1e-12)
        assert history["hparams/penalty"].nunique() == 5  # theta moved at every step
        assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
        assert (history["hypergrad_converged"] == 1.0).all()
        # Each report pairs a value with the derivative at that value: the sign says where to go.
        moves = np.sign(np.diff(np.log(history["hparams/penalty"].to_numpy()[:-1])))
        assert np.array_equal(moves, -np.sign(history["hypergrad/penalty"].to_numpy()[:-2]))
    first = {r.config["split_seed"]: r.metrics_dataframe.iloc[0] for r in results}
    assert first[0]["val_loss"] != pytest.approx(first[1]["val_loss"], rel=1e-6)
    assert first[0]["test_loss"] != pytest.approx(first[1]["test_loss"], rel=1e-6)


def test_a_bad_split_seed_is_refused():
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="split_seed must be a non-negative integer"):
            train_digits_logreg({"split_seed": bad})


def test_failed_trial_resumes_from_its_checkpoint_exactly(ray_session, storage):
    config = {"penalty": 0.05, "hypersteps": 3, "outer_lr": 0.5,
              "fail_at_hyperstep": tune.grid_search([None, 2])}   # side by side, one run
    results = _fit(config, storage, "straight-and-broken", max_failures=1)
    assert not results.errors and len(results) == 2
    runs = {r.config["fail_at_hyperstep"]: r.metrics_dataframe for r in results}
    straight, history = runs[None], runs[2]
    assert history["hyperstep"].tolist() == straight["hyperstep"].tolist()
    np.testing.assert_allclose(history["val_loss"], straight["val_loss"], rtol=1e-9)
    np.testing.assert_allclose(history["hparams/penalty"], straight["hparams/penalty"], rtol=1e-12)

