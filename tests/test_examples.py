"""The examples run as they are."""

from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_existing_tune_script_with_autometa_space_and_searcher(ray_session, storage):
    spec = importlib.util.spec_from_file_location(
        "tune_existing", os.path.join(ROOT, "examples", "tune_existing.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    space = module.autometa.load_space(os.path.join(ROOT, "examples", "sgd_space.yaml"))
    results = module.main(num_samples=4, storage_path=storage)
    assert len(results) == 4 and not results.errors
    for result in results:  # the condition of l1_ratio holds in every trial
        assert not space.problems(result.config), result.config
        assert (result.config["l1_ratio"] is None) == (result.config["penalty"] != "elasticnet")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bring_your_own_model_in_plain_tune_reports_checked_hypergradients(ray_session, storage):
    results = _load("bring_your_own_model").main(num_samples=2, storage_path=storage)
    assert len(results) == 2 and not results.errors
    for result in results:
        history = result.metrics_dataframe
        assert len(history) == result.config["epochs"]
        for key in ("hypergrad/weight_decay", "hparams/weight_decay", "hypergrad_converged",
                    "hypergrad_residual", "hypergrad_inner_gap"):
            assert key in history, key
        assert history["hparams/weight_decay"].iloc[-1] == pytest.approx(  # float32 tensors
            result.config["weight_decay"], rel=1e-6)
        assert result.checkpoint is not None   # report_hypergradients saved the state


def test_bring_your_own_model_file_runs_from_another_folder_with_the_cli(
        ray_session, storage, tmp_path, monkeypatch, capsys):
    import shutil
    import sys

    from autometa.launch.cli import main

    scratch = tmp_path / "my_project"
    scratch.mkdir()
    for name in ("bring_your_own_model.py", "bring_your_own_model.yaml"):
        shutil.copy(os.path.join(ROOT, "examples", name), scratch / name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)               # the module is found next to the file
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["run", str(scratch / "bring_your_own_model.yaml"), "--quiet",
                 "--num-samples", "3", "--storage-path", storage]) == 0
    out = capsys.readouterr().out
    assert "Best trial" in out and "Hypergradients:" in out


def test_online_own_model_learns_its_values_in_plain_tune_and_resumes_exactly(
        ray_session, storage, tmp_path, monkeypatch):
    module = _load("online_own_model")
    results = module.main(num_samples=2, storage_path=storage)
    assert len(results) == 2 and not results.errors
    for result in results:
        history = result.metrics_dataframe
        assert len(history) == result.config["epochs"]
        for key in ("hypergrad/weight_decay", "hypergrad/lr", "hparams/lr", "hyperstep_trust"):
            assert key in history, key
        # learned inside the trial: moved from the start by the first report, and still moving
        # after it unless it sits at a bound of the file's range
        space = module.autometa.load_space(module.SPACE_FILE)
        for name in ("weight_decay", "lr"):
            trajectory = list(history[f"hparams/{name}"])
            assert trajectory[0] != pytest.approx(result.config[name], rel=1e-4), name
            bounds = (space[name].low, space[name].high)
            assert len(set(trajectory)) > 1 or any(
                trajectory[-1] == pytest.approx(b, rel=1e-4) for b in bounds), (name, trajectory)
        assert result.checkpoint is not None

    # a trial that fails after 2 epochs goes on from its checkpoint in real Tune and ends
    # where the uninterrupted one above ends (the engine's tangents and the updater's moments
    # are in the checkpoint)
    from ray import tune

    from autometa.launch.durable import DurableStateCallback

    train, straight = module.train, results[0]

    def fails_once(config):
        if tune.get_checkpoint() is None:
            train({**config, "epochs": 2})
            raise RuntimeError("injected failure after epoch 2")
        train(config)

    grid = tune.Tuner(fails_once, param_space=straight.config, run_config=tune.RunConfig(
        name="fails_once", storage_path=storage, callbacks=[DurableStateCallback()],
        failure_config=tune.FailureConfig(max_failures=1))).fit()
    assert not grid.errors
    failed = grid[0]
    assert len(failed.metrics_dataframe) == straight.config["epochs"]  # 1-2, then 3-5
    for key in ("val_loss", "hparams/weight_decay", "hparams/lr"):
        assert failed.metrics[key] == pytest.approx(straight.metrics[key], rel=1e-6), key
