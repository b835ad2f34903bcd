"""The hypergradient-guided population scheduler: its explore step, and PBT in real Tune."""

from __future__ import annotations

import math
import random

import pytest
from ray import tune

from autometa.schedulers import make_scheduler
from autometa.schedulers.population import explore_differentiable
from autometa.space import space_from_dict
from autometa.trainables.synthetic import quadratic

SPACE = space_from_dict({"parameters": {
    "model": {"lam": {"type": "loguniform", "low": 1e-4, "high": 1.0, "differentiable": True}},
    "x": {"type": "uniform", "low": 0.0, "high": 1.0, "differentiable": True},
    "act": {"type": "choice", "values": ["relu", "tanh"]},
}})


def test_explore_moves_against_the_hypergradient_inside_bounds():
    config = {"model": {"lam": 1e-2}, "x": 0.999999, "act": "relu"}
    result = {"hypergrad/model.lam": 3.0, "hypergrad/x": -5.0}
    new, ops = explore_differentiable(SPACE, config, result, "min", 0.5, (1.2, 0.8),
                                      random.Random(0))
    assert new["model"]["lam"] == pytest.approx(1e-2 * math.exp(-0.5))  # log step of 0.5
    assert 0.999999 <= new["x"] < 1.0  # pushed up, still inside the bound
    assert new["act"] == "relu" and config["model"]["lam"] == 1e-2  # input not modified
    assert set(ops) == {"model.lam", "x"}
    up, _ = explore_differentiable(SPACE, config, result, "max", 0.5, (1.2, 0.8), random.Random(0))
    assert up["model"]["lam"] == pytest.approx(1e-2 * math.exp(0.5))


def test_explore_without_hypergradient_perturbs_like_pbt():
    config = {"model": {"lam": 0.9}, "x": 0.5, "act": "tanh"}
    new, ops = explore_differentiable(SPACE, config, {}, "min", 0.5, (1.2, 0.8), random.Random(1))
    assert new["model"]["lam"] in (pytest.approx(0.72), pytest.approx(1.0, rel=1e-6))  # clipped
    assert ops["x"] in ("* 1.2", "* 0.8")


def test_reported_value_is_the_starting_point():
    config = {"model": {"lam": 1e-2}, "x": 0.5, "act": "relu"}
    result = {"hparams/model.lam": 1e-3, "hypergrad/model.lam": -1.0}
    new, _ = explore_differentiable(SPACE, config, result, "min", 0.5, (1.2, 0.8), random.Random(0))
    assert new["model"]["lam"] == pytest.approx(1e-3 * math.exp(0.5))


def test_population_moves_toward_the_optimum_in_real_tune(ray_session, storage):
    space = space_from_dict({"parameters": {
        "x": {"type": "uniform", "low": 0.0, "high": 3.0, "differentiable": True},
        "iterations": 12, "report_hypergrad": True, "checkpoint": True, "target": 0.5}})
    scheduler = make_scheduler("hypergradient_pbt", space=space, seed=0,
                               perturbation_interval=2, quantile_fraction=0.5, step_size=0.7)
    start = [2.9, 2.5, 2.2, 2.7]  # all far from the optimum x = 0.5
    results = tune.Tuner(
        quadratic,
        param_space={"x": tune.grid_search(start), "iterations": 12, "report_hypergrad": True,
                     "checkpoint": True, "target": 0.5},
        tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=scheduler,
                                    max_concurrent_trials=4),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert not results.errors
    final = [r.config["x"] for r in results]
    assert all(0.0 <= x <= 3.0 for x in final)
    assert min(abs(x - 0.5) for x in final) < min(abs(x - 0.5) for x in start) - 0.5, final
