"""The examples run as they are."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil

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


def test_bring_your_own_model_file_runs_from_another_folder_with_the_cli(tmp_path):
    """As a user runs it: ``autometa run`` in a fresh process, from another folder (the module
    is found next to the file), trained short enough that most hypergradients are unconverged:
    each worker process prints its first warning only, and the summary counts them all."""
    import subprocess
    import sys

    from autometa.trial.keys import WARNINGS_ENV

    scratch = tmp_path / "my_project"
    scratch.mkdir()
    shutil.copy(os.path.join(ROOT, "examples", "bring_your_own_model.py"), scratch)
    with open(os.path.join(ROOT, "examples", "bring_your_own_model.yaml")) as handle:
        text = handle.read()
    assert "steps_per_epoch: 300" in text
    (scratch / "bring_your_own_model.yaml").write_text(
        text.replace("steps_per_epoch: 300", "steps_per_epoch: 10"))  # far from a minimum
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != WARNINGS_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "autometa.launch.cli", "run",
         str(scratch / "bring_your_own_model.yaml"), "--num-samples", "3",
         "--storage-path", str(tmp_path / "results")],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Best trial" in out and "Trials: 3 of 3 planned finished." in out, out
    counted = re.search(r"Hypergradients: (\d+) of 15 reports did not meet", out)
    assert counted, out
    said = [line for line in out.splitlines() if "UnconvergedWarning" in line]
    assert 1 <= len(said) <= 3 < int(counted.group(1)), out  # one per worker process at most
    assert all("not said again in this process" in line for line in said), said


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
