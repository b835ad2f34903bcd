"""The per-layer weight-decay CNN: its hypergradients in Tune, and PBT restoring it under new configs."""

from __future__ import annotations

import math
import os

import torch
from ray import tune

from autometa.launch.plan import Overrides
from autometa.launch.run import run_experiment
from autometa.space import load_space
from autometa.trainables.digits import load_optimizer_state
from autometa.trainables.digits_cnn_decay import LAYERS, decay_values, train_digits_cnn_decay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_decay_values_and_bad_layer():
    assert decay_values({"decay": 0.1}) == {layer: 0.1 for layer in LAYERS}
    assert decay_values({"decay": {"fc": 0.5}})["fc"] == 0.5
    try:
        decay_values({"decay": {"conv3": 0.5}})
    except ValueError as err:
        assert "conv3" in str(err)
    else:
        raise AssertionError("an unknown layer was accepted")


def test_restored_optimizer_keeps_the_new_learning_rate():
    w = torch.nn.Parameter(torch.ones(3))
    old = torch.optim.SGD([w], lr=0.5, momentum=0.9)
    w.sum().backward()
    old.step()
    new = torch.optim.SGD([w], lr=0.01, momentum=0.9)
    load_optimizer_state(new, old.state_dict())
    assert new.param_groups[0]["lr"] == 0.01
    assert torch.equal(new.state[w]["momentum_buffer"], old.state[w]["momentum_buffer"])


def test_reports_finite_hypergradients_that_lower_a_too_large_decay(ray_session, storage):
    results = tune.Tuner(
        train_digits_cnn_decay,
        param_space={"decay": 1.0, "epochs": 3, "train_size": 200},
        run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
    assert not results.errors
    metrics = results[0].metrics
    for layer in LAYERS:
        assert metrics[f"hparams/decay.{layer}"] == 1.0
        assert math.isfinite(metrics[f"hypergrad/decay.{layer}"])
    # a decay of 1 keeps the network near zero: less decay lowers the validation loss
    assert all(metrics[f"hypergrad/decay.{layer}"] > 0 for layer in LAYERS)


def test_population_file_runs_with_optimizer_mutations(ray_session, storage, tmp_path):
    with open(os.path.join(ROOT, "search_spaces", "digits_cnn_pbt.yaml")) as f:
        text = f.read()
    for old, new in (("epochs: 18", "epochs: 3"), ("train_size: 300", "train_size: 150"),
                     ("perturbation_interval: 3", "perturbation_interval: 1")):
        text = text.replace(old, new)
    (tmp_path / "pbt.yaml").write_text(text)
    space = load_space(str(tmp_path / "pbt.yaml"))
    results, _ = run_experiment(space, Overrides(num_samples=4, storage_path=storage),
                                verbose=0)
    assert not results.errors and len(results) == 4
    for result in results:
        decays = result.config["decay"]
        assert all(1e-6 <= decays[layer] <= 1.0 for layer in LAYERS)
        assert 1e-3 <= result.config["lr"] <= 0.3
        assert result.config["optimizer"] in ("sgd", "adam")
