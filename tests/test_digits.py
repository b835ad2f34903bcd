"""The built-in digits example: data splits, the trainables in real Tune, pause and resume."""

from __future__ import annotations

import os

import numpy as np
from ray import tune

from autometa.data.digits import load_digits_splits
from autometa.launch.durable import DurableStateCallback
from autometa.launch.plan import Overrides
from autometa.launch.run import run_experiment
from autometa.space import load_space
from autometa.trainables.digits import train_digits_cnn, train_digits_mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_splits_are_seeded_disjoint_and_complete():
    a, b = load_digits_splits(seed=0), load_digits_splits(seed=0)
    assert np.array_equal(a.x_train, b.x_train)
    sizes = len(a.y_train), len(a.y_val), len(a.y_test)
    assert sum(sizes) == 1797 and sizes == (1079, 359, 359)
    assert not np.array_equal(load_digits_splits(seed=1).y_val, a.y_val)
    assert a.x_train.min() >= 0 and a.x_train.max() <= 1


def _run(trainable, config, storage, name):
    tuner = tune.Tuner(trainable, param_space=config,
                       run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0))
    return tuner.fit()


def test_mlp_and_cnn_learn_and_report_every_epoch(ray_session, storage):
    for trainable in (train_digits_mlp, train_digits_cnn):
        results = _run(trainable, {"epochs": 4, "lr": 0.1, "optimizer": {"name": "sgd",
                                                                       "momentum": 0.9}},
                       storage, trainable.__name__)
        result = results[0]
        assert not results.errors
        history = result.metrics_dataframe
        assert list(history["epoch"]) == [1, 2, 3, 4]
        assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
        assert result.metrics["val_accuracy"] > 0.8
        assert result.checkpoint is not None


def test_failed_trial_resumes_exactly_from_its_checkpoint(ray_session, storage):
    """A trial that dies at epoch 3 restarts from its epoch-2 checkpoint and ends as if unbroken."""
    config = {"epochs": 4, "lr": 0.05, "optimizer": "adam", "seed": 3, "dropout": 0.0,
              "fail_at_epoch": tune.grid_search([None, 3])}   # side by side, one run
    results = tune.Tuner(
        train_digits_mlp, param_space=config,
        run_config=tune.RunConfig(storage_path=storage, name="broken", verbose=0,
                                  callbacks=[DurableStateCallback()],  # keeps epochs 1-2
                                  failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert not results.errors and len(results) == 2
    runs = {r.config["fail_at_epoch"]: r.metrics_dataframe for r in results}
    straight, history = runs[None], runs[3]
    assert history["epoch"].tolist() == [1, 2, 3, 4]  # epochs 1-2 were not redone
    np.testing.assert_allclose(history["val_loss"], straight["val_loss"], rtol=1e-6)


def test_quickstart_file_runs(ray_session, storage):
    space = load_space(os.path.join(ROOT, "search_spaces", "quickstart.yaml"))
    space.experiment.stop = {"training_iteration": 3}
    space.experiment.scheduler.options["grace_period"] = 1
    results, path = run_experiment(space, Overrides(num_samples=4, storage_path=storage), verbose=0)
    assert not results.errors and len(results) == 4
    assert os.path.exists(os.path.join(path, "autometa_space.yaml"))
    for result in results:
        assert not space.problems(result.config)


def test_standardized_benchmark_split():
    from autometa.data.digits import load_digits_standardized

    d = load_digits_standardized()
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (300, 500, 997)
    varying = d.x_train.std(0) > 0
    np.testing.assert_allclose(d.x_train.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(d.x_train.std(0)[varying], 1, rtol=1e-12)
    assert np.array_equal(load_digits_standardized().y_val, d.y_val)


def test_cross_validation_folds_partition_train_and_validation():
    from autometa.data.digits import cross_validation_fold

    splits = load_digits_splits(seed=0)
    pool = len(splits.y_train) + len(splits.y_val)
    folds = [cross_validation_fold(splits, k, 5) for k in range(5)]
    assert sum(len(f.y_val) for f in folds) == pool
    assert all(len(f.y_train) + len(f.y_val) == pool for f in folds)
    assert all(np.array_equal(f.x_test, splits.x_test) for f in folds)
    rows = {tuple(r) for f in folds for r in f.x_val.round(4)}
    assert len(rows) > 0.9 * pool  # validation parts differ (a few digit images repeat)
    import pytest

    with pytest.raises(ValueError, match="fold must be in 0..4"):
        cross_validation_fold(splits, 5, 5)
