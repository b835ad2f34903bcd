"""The digits CNN with one weight decay per layer, reporting its hypergradient every epoch.

A population scheduler (``hypergradient_pbt``) or the ``hypergradient`` searcher moves the
decays; the trial itself trains with the values its config gives. The decay enters the
training loss as :math:`\\tfrac12 \\sum_k \\lambda_k \\|W_k\\|^2` over the weights of layer
``k`` (``conv1``, ``conv2``, ``fc``; biases and BatchNorm are not decayed). After every epoch
the implicit hypergradient :math:`\\partial L_{val}/\\partial \\lambda_k` is taken at the current
weights over the whole training split (conjugate gradient with ``damping``; the weights are not
at an exact optimum, so it is a local, damped estimate: schedulers use its sign and size, not
its exact value).

Config keys (all optional):

============== ========== ==========================================================
key            default    meaning
============== ========== ==========================================================
decay          1e-4 each  mapping ``{conv1, conv2, fc}`` (a search-space group), or
                          one number for all three
optimizer      ``sgd``    ``sgd`` (momentum 0.9) or ``adam``
lr             0.05       learning rate
hidden         16         channels of the first convolution
batch_size     64         minibatch size
epochs         20         epochs (one report each, with a checkpoint)
train_size     (all)      use only the first ``train_size`` training samples (harder task)
method         ``cg``     hypergradient method; ``maxiter`` 20 and ``damping`` 0.01
seed           0          weights and minibatch order
============== ========== ==========================================================

Each epoch reports ``train_loss``, ``val_loss``, ``val_accuracy``, ``test_loss``,
``test_accuracy`` and, per layer, ``hparams/decay.<layer>`` and ``hypergrad/decay.<layer>``.
A checkpoint restored under a new config (PBT's exploit) keeps the weights and takes the new
decays; the optimizer state is kept only when the optimizer did not change.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import torch
from ray import tune
from torch import nn

from autometa.data.digits import load_digits_splits
from autometa.hypergrad.families import Hyperparameter, LogTransform
from autometa.hypergrad.families.weight_decay import l2_penalty
from autometa.hypergrad.loop import HyperTrainer, ModelView
from autometa.trainables.digits import build_cnn, evaluate, load_optimizer_state, trial_device

LAYERS = {"conv1": ["1.weight"], "conv2": ["5.weight"], "fc": ["11.weight"]}
"""Decay groups: layer name -> parameter names in :func:`build_cnn`'s ``nn.Sequential``."""


def decay_values(config: dict[str, Any]) -> dict[str, float]:
    """The decay of each layer from ``config['decay']`` (a mapping or one number)."""
    spec = config.get("decay", 1e-4)
    if not isinstance(spec, dict):
        return {layer: float(spec) for layer in LAYERS}
    unknown = set(spec) - set(LAYERS)
    if unknown:
        raise ValueError(f"decay: unknown layers {sorted(unknown)}; use {sorted(LAYERS)}")
    return {layer: float(spec.get(layer, 1e-4)) for layer in LAYERS}


def make_optimizer(name: str, lr: float, params: Any) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def train_digits_cnn_decay(config: dict[str, Any]) -> None:
    """Tune function trainable (see the module docstring)."""
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    device = trial_device()
    data = load_digits_splits(seed=0)
    size = int(config.get("train_size") or len(data.y_train))
    t = {name: torch.as_tensor(getattr(data, name), device=device)
         for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    t["x_train"], t["y_train"] = t["x_train"][:size], t["y_train"][:size]
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    model = build_cnn(config).to(device)
    name = config.get("optimizer", "sgd")
    optimizer = make_optimizer(name, float(config.get("lr", 0.05)), model.parameters())
    hparams = [Hyperparameter.from_value(f"decay.{layer}", torch.tensor(value, device=device),
                                         LogTransform()) for layer, value in
               decay_values(config).items()]
    groups = {f"decay.{layer}": names for layer, names in LAYERS.items()}

    def train_loss(view: Any, batch: Any, values: dict) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(view(x), y) + l2_penalty(view.params, values, groups)

    def val_loss(view: Any, batch: Any, values: dict) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(view(x), y)

    trainer = HyperTrainer(model, optimizer, hparams, train_loss, val_loss,
                           method=config.get("method", "cg"),
                           method_options={"maxiter": int(config.get("maxiter", 20))},
                           damping=float(config.get("damping", 1e-2)))
    rng = np.random.default_rng(seed)
    start = _restore(model, optimizer, name, rng, device)
    values = trainer.values()
    batch = int(config.get("batch_size", 64))
    for epoch in range(start + 1, int(config.get("epochs", 20)) + 1):
        model.train()
        order = torch.as_tensor(rng.permutation(size), device=device)
        total = 0.0
        for i in range(0, size, batch):
            idx = order[i:i + batch]
            optimizer.zero_grad()
            loss = train_loss(ModelView(model), (t["x_train"][idx], t["y_train"][idx]), values)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        grads, _, info = trainer.hypergradient((t["x_train"], t["y_train"]),
                                               (t["x_val"], t["y_val"]))
        metrics = {"epoch": epoch, "train_loss": total / size,
                   "hypergrad_converged": float(info.converged)}
        for h in hparams:
            metrics[f"hparams/{h.name}"] = float(h.value().detach())
            metrics[f"hypergrad/{h.name}"] = float(h.value_grad(grads[h.name]).detach())
        metrics.update(evaluate(model, t, "val"))
        metrics.update(evaluate(model, t, "test"))
        with tempfile.TemporaryDirectory() as folder:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "optimizer_name": name, "rng": rng.bit_generator.state, "epoch": epoch},
                       os.path.join(folder, "state.pt"))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, name: str,
             rng: np.random.Generator, device: torch.device) -> int:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        state = torch.load(os.path.join(folder, "state.pt"), map_location=device,
                           weights_only=False)
    model.load_state_dict(state["model"])
    if state["optimizer_name"] == name:  # PBT may have switched the optimizer
        load_optimizer_state(optimizer, state["optimizer"])
    rng.bit_generator.state = state["rng"]
    return int(state["epoch"])
