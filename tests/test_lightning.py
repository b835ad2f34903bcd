"""The Lightning callback: hypergradients logged at validation end, reported by Ray's callback."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from ray import cloudpickle, tune
from sklearn.datasets import load_wine
from torch import nn

from autometa.hypergrad import Hyperparameters
from autometa.space import space_from_dict

lightning = pytest.importorskip("lightning")  # the 'lightning' extra, part of 'all'
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/

SPACE = space_from_dict({"parameters": {"weight_decay": {
    "type": "loguniform", "low": 1e-3, "high": 1.0, "differentiable": True}}})


def _data():
    x, y = load_wine(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x = (x - x[:120].mean(0)) / x[:120].std(0)
    return (torch.tensor(x[:120], dtype=torch.float32), torch.tensor(y[:120]),
            torch.tensor(x[120:], dtype=torch.float32), torch.tensor(y[120:]))


class WineMLP(lightning.LightningModule):
    def __init__(self, hp):
        super().__init__()
        self.hp = hp
        self.net = nn.Sequential(nn.Linear(13, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)

    def objective(self, x, y, hp):
        decay = sum((p ** 2).sum() for n, p in self.named_parameters() if "weight" in n)
        return nn.functional.cross_entropy(self(x), y) + 0.5 * hp["weight_decay"] * decay

    def training_step(self, batch, index):
        return self.objective(*batch, self.hp)

    def validation_step(self, batch, index):
        self.log("val_loss", nn.functional.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.02)


def _trainable(config):
    from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback

    from autometa.trial.lightning import HypergradientCallback

    torch.manual_seed(0)
    x, y, xv, yv = _data()
    hp = Hyperparameters.from_config(config, SPACE)
    model = WineMLP(hp)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=120)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=58)
    callback = HypergradientCallback(hp, lambda m, hp: m.objective(x, y, hp),
                                     lambda m, hp: nn.functional.cross_entropy(m(xv), yv))
    trainer = lightning.Trainer(
        max_epochs=config["epochs"], accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
        callbacks=[callback, TuneReportCheckpointCallback(save_checkpoints=False)])
    trainer.fit(model, loader, val)


def test_callback_reports_hypergradients_in_a_real_tune_run(ray_session, storage):
    results = tune.Tuner(
        _trainable, param_space={"weight_decay": tune.grid_search([0.01, 0.5]), "epochs": 3},
        run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
    assert not results.errors
    for result in results:
        history = result.metrics_dataframe
        assert len(history) == 3  # one report per validation epoch
        for key in ("val_loss", "hypergrad/weight_decay", "hparams/weight_decay",
                    "hypergrad_converged", "hypergrad_residual", "hypergrad_inner_gap"):
            assert key in history and np.isfinite(history[key]).all(), key
        assert history["hparams/weight_decay"].iloc[-1] == pytest.approx(
            result.config["weight_decay"], rel=1e-5)


def test_callback_value_equals_the_engine_on_the_same_weights():
    from autometa.hypergrad import ImplicitEngine
    from autometa.trial.lightning import HypergradientCallback

    torch.manual_seed(0)
    x, y, xv, yv = _data()
    hp = Hyperparameters.from_config({"weight_decay": 0.05}, SPACE)
    model = WineMLP(hp)
    callback = HypergradientCallback(hp, lambda m, hp: m.objective(x, y, hp),
                                     lambda m, hp: nn.functional.cross_entropy(m(xv), yv))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=120)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=58)
    trainer = lightning.Trainer(max_epochs=5, accelerator="cpu", logger=False,
                                enable_progress_bar=False, enable_model_summary=False,
                                enable_checkpointing=False, callbacks=[callback])
    with pytest.warns(Warning):
        trainer.fit(model, loader, val)
    logged = float(trainer.callback_metrics["hypergrad/weight_decay"])
    assert logged == pytest.approx(float(callback.last.grads["weight_decay"]), rel=1e-6)
    with pytest.warns(Warning):  # the same maths outside Lightning, without warm start
        again = ImplicitEngine(model, hp, warm_start=False).hypergradients(
            lambda hp: model.objective(x, y, hp),
            lambda hp: nn.functional.cross_entropy(model(xv), yv))
    assert float(again.grads["weight_decay"]) == pytest.approx(logged, rel=1e-2, abs=1e-6)
    assert set(callback.state_dict()) == {"solution", "hparams"}
