"""The hypergradient-guided population scheduler: its explore step, and PBT in real Tune."""

from __future__ import annotations

import math
import os
import random
import signal

import pytest
from ray import tune

from autometa.convert.tune import to_tune
from autometa.schedulers import make_scheduler
from autometa.schedulers.persist import state_callbacks
from autometa.schedulers.population import clip_to_space, explore_differentiable, space_mutations
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


def test_a_nan_hypergradient_is_perturbed_like_pbt_and_said(caplog):
    import logging

    config = {"model": {"lam": 0.1}, "x": 0.5, "act": "tanh"}
    result = {"hypergrad/model.lam": float("nan"), "hypergrad/x": 2.0}
    with caplog.at_level(logging.WARNING, logger="autometa.schedulers"):
        _, ops = explore_differentiable(SPACE, config, result, "min", 0.5, (1.2, 0.8),
                                        random.Random(0))
    assert ops["model.lam"] in ("* 1.2", "* 0.8") and ops["x"].startswith("hypergradient step")
    assert any("hypergrad/model.lam=nan" in r.getMessage() for r in caplog.records)


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


@pytest.mark.parametrize("plain", [False, True], ids=["marked", "plain-tune-dict"])
def test_population_moves_toward_the_optimum_in_real_tune(ray_session, storage, plain, caplog):
    if plain:  # a plain Tune param_space: no marker; x is adopted from what the trials report
        space = {"x": tune.uniform(0.0, 3.0), "iterations": 12, "report_hypergrad": True,
                 "checkpoint": True, "target": 0.5}
    else:
        space = space_from_dict({"parameters": {
            "x": {"type": "uniform", "low": 0.0, "high": 3.0, "differentiable": True},
            "iterations": 12, "report_hypergrad": True, "checkpoint": True, "target": 0.5}})
    caplog.set_level("INFO", logger="autometa.schedulers")
    scheduler = make_scheduler("hypergradient_pbt", space=space, seed=0,
                               perturbation_interval=2, quantile_fraction=0.5, step_size=0.7)
    start = [2.9, 2.5, 2.2, 2.7]  # all far from the optimum x = 0.5
    results = tune.Tuner(
        quadratic,
        param_space={"x": tune.grid_search(start), "iterations": 12, "report_hypergrad": True,
                     "checkpoint": True, "target": 0.5},
        tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=scheduler,
                                    max_concurrent_trials=4, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert not results.errors
    final = [r.config["x"] for r in results]
    assert all(0.0 <= x <= 3.0 for x in final)
    assert min(abs(x - 0.5) for x in final) < min(abs(x - 0.5) for x in start) - 0.5, final
    adopted = [r for r in caplog.records if "no parameter marked differentiable; moving ['x']"
               in r.getMessage()]
    assert len(adopted) == (1 if plain else 0)


def test_without_any_reported_hypergradient_it_says_so_once_and_explores_as_pbt(
        ray_session, storage, caplog):
    space = {"x": tune.uniform(0.0, 3.0), "iterations": 8, "checkpoint": True}  # no hypergrads
    caplog.set_level("INFO", logger="autometa.schedulers")
    scheduler = make_scheduler("hypergradient_pbt", space=space, seed=0,
                               perturbation_interval=2, quantile_fraction=0.5)
    results = tune.Tuner(
        quadratic, param_space=space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=scheduler,
                                    num_samples=4, max_concurrent_trials=4, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert not results.errors and len(results) == 4
    assert scheduler._num_perturbations > 0  # it explored
    said = [r for r in caplog.records if "no parameter is differentiable" in r.getMessage()]
    assert len(said) == 1, said
    assert "report no hypergrad/<name> for a continuous parameter" in said[0].getMessage()


class _Interrupt(tune.Callback):
    """Interrupts the experiment (as Ctrl-C does) once the scheduler has perturbed three times
    (one more than the test requires of the saved state: Tune saves the state a little after
    the scheduler moves, and a CI run once saved only the first perturbation), and records the
    scheduler's per-trial state when each ``fit`` starts stepping."""

    def __init__(self, scheduler, log):
        self.scheduler, self.log, self.seen = scheduler, log, False

    def on_step_begin(self, iteration, trials, **info):
        if not self.seen:
            self.seen = True
            with open(self.log, "a") as f:
                f.write(repr(_snapshot(self.scheduler)) + "\n")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.scheduler._num_perturbations >= 3 and not os.path.exists(self.log + ".sent"):
            open(self.log + ".sent", "w").close()
            os.kill(os.getpid(), signal.SIGINT)


def _snapshot(scheduler):
    return {"num_perturbations": scheduler._num_perturbations,
            "trials": {t.trial_id: (s.last_perturbation_time, s.last_score)
                       for t, s in scheduler._trial_state.items()}}


def test_state_survives_an_interrupted_and_restored_experiment(ray_session, storage, tmp_path):
    space = space_from_dict({"parameters": {
        "x": {"type": "uniform", "low": 0.0, "high": 3.0, "differentiable": True},
        "iterations": 16, "report_hypergrad": True, "checkpoint": True, "sleep": 0.05}})
    scheduler = make_scheduler("hypergradient_pbt", space=space, seed=0,
                               perturbation_interval=3, quantile_fraction=0.5)
    log = str(tmp_path / "snapshots")
    callbacks = [*state_callbacks(scheduler), _Interrupt(scheduler, log)]
    tuner = tune.Tuner(
        quadratic, param_space=to_tune(space),
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=4,
                                    scheduler=scheduler, max_concurrent_trials=2,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name="pbt", storage_path=storage, verbose=0,
                                  callbacks=callbacks))
    tuner.fit()
    saved = _read_state(os.path.join(storage, "pbt"))
    assert saved["num_perturbations"] >= 2
    assert any(t["last_perturbation_time"] > 0 for t in saved["trials"].values())
    restored = tune.Tuner.restore(os.path.join(storage, "pbt"), trainable=quadratic,
                                  resume_unfinished=True)
    results = restored.fit()
    assert not results.errors and len(results) == 4
    before, after = [eval(line) for line in open(log)]
    assert after["num_perturbations"] == saved["num_perturbations"] >= before["num_perturbations"]
    assert after["trials"] == {tid: (t["last_perturbation_time"], t["last_score"])
                               for tid, t in saved["trials"].items()}


def _read_state(path):
    import glob
    import pickle

    files = sorted(glob.glob(os.path.join(path, "callback-states-*.pkl")))
    assert files, f"no callback state saved in {path}"
    with open(files[-1], "rb") as f:
        states = pickle.load(f)
    return next(s["state"] for s in states.values() if s)


def test_space_mutations_and_clipping():
    space = space_from_dict({"parameters": {
        "decay": {"fc": {"type": "loguniform", "low": 1e-6, "high": 1.0, "differentiable": True}},
        "opt": {"type": "choice", "values": ["sgd", "adam"]},
        "lr": {"type": "loguniform", "low": 1e-3, "high": 0.3},
        "width": {"type": "randint", "low": 4, "high": 8},
        "epochs": 5}})
    mutations = space_mutations(space)
    assert set(mutations) == {"opt", "lr", "width"} and mutations["opt"] == ["sgd", "adam"]
    clipped = clip_to_space(space, {"decay": {"fc": 3.0}, "lr": 0.36, "width": 9.6,
                                    "opt": "sgd", "epochs": 5})
    assert clipped == {"decay": {"fc": 1.0}, "lr": 0.3, "width": 8, "opt": "sgd", "epochs": 5}
    scheduler = make_scheduler("hypergradient_pbt", space=space)
    assert set(scheduler._hyperparam_mutations) == {"opt", "lr", "width"}
    # named parameters replace the markers: lr moves by hypergradient, decay.fc by mutation
    named = make_scheduler("hypergradient_pbt", space=space, differentiable=["lr"])
    assert set(named._hyperparam_mutations) == {"decay", "opt", "width"}
    with pytest.raises(ValueError, match="differentiable: not in the space: \\['nope'\\]"):
        make_scheduler("hypergradient_pbt", space=space, differentiable=["nope"])
    with pytest.raises(ValueError, match="differentiable: opt: only a continuous parameter"):
        make_scheduler("hypergradient_pbt", space=space, differentiable=["opt"])
    # a plain Tune param_space is converted (no markers: every parameter mutates until the
    # trials' hypergradients name the differentiable ones)
    plain = make_scheduler("hypergradient_pbt", space={"lr": tune.loguniform(1e-3, 0.3),
                                                       "opt": tune.choice(["sgd", "adam"])})
    assert set(plain._hyperparam_mutations) == {"lr", "opt"}


def test_a_file_naming_a_missing_differentiable_parameter_for_the_scheduler_fails_early(
        tmp_path):
    from autometa.launch.plan import plan_experiment
    from autometa.space import SpaceError, load_space

    file = tmp_path / "pbt.yaml"
    file.write_text("experiment:\n  metric: loss\n  searcher: random\n"
                    "  scheduler: {name: hypergradient_pbt, differentiable: [lamda]}\n"
                    "parameters:\n  lam: {type: loguniform, low: 1.0e-4, high: 1.0}\n")
    with pytest.raises(SpaceError, match=r"pbt.yaml:4: experiment.scheduler.differentiable: "
                                         r"hypergradient_pbt: differentiable: not in the space"):
        plan_experiment(load_space(str(file)))
