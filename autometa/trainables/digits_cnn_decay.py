"""The digits CNN with one weight decay per layer, reporting its hypergradient every epoch.

A population scheduler (``hypergradient_pbt``) or the ``hypergradient`` searcher moves the
decays; the trial itself trains with the values its config gives. The decay enters the
training loss as :math:`\\tfrac12 \\sum_k \\lambda_k \\|W_k\\|^2` over the weights of layer
``k`` (``conv1``, ``conv2``, ``fc``; biases and BatchNorm are not decayed). After every epoch
the implicit hypergradient :math:`\\partial L_{val}/\\partial \\lambda_k` is taken at the current
weights over the whole training split with the public trial API
(:class:`~autometa.hypergrad.model.ImplicitEngine`, warm-started across epochs); the weights of
an SGD epoch are not at an exact optimum, and the reported checks
(``hypergrad_converged``, ``hypergrad_inner_gap``, ...) say how far they are.

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
method         ``auto``   hypergradient method; ``maxiter`` 20, ``damping`` ``auto``
seed           0          weights and minibatch order
============== ========== ==========================================================

Each epoch reports ``train_loss``, ``val_loss``, ``val_accuracy``, ``test_loss``,
``test_accuracy`` and, per layer, ``hparams/decay.<layer>`` and ``hypergrad/decay.<layer>``.
A checkpoint restored under a new config (PBT's exploit) keeps the weights and takes the new
decays; the optimizer state is kept only when the optimizer did not change.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from autometa.data.digits import load_digits_splits
from autometa.hypergrad.families import Hyperparameter, LogTransform
from autometa.hypergrad.model import Hyperparameters, ImplicitEngine
from autometa.trainables.digits import build_cnn, evaluate, load_optimizer_state, trial_device
from autometa.trial.tune import report_hypergradients, restore_state

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
    hp = Hyperparameters([Hyperparameter.from_value(f"decay.{layer}",
                                                    torch.tensor(value, device=device),
                                                    LogTransform())
                          for layer, value in decay_values(config).items()])
    layers = dict(model.named_parameters())

    def train_loss(hp: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        penalty = sum(0.5 * hp[f"decay.{layer}"] * (layers[n] ** 2).sum()
                      for layer, names in LAYERS.items() for n in names)
        return nn.functional.cross_entropy(model(x), y) + penalty

    engine = ImplicitEngine(model, hp, method=config.get("method", "auto"),
                            damping=config.get("damping", "auto"),
                            maxiter=int(config.get("maxiter", 20)))
    rng = np.random.default_rng(seed)
    start = _restore(model, optimizer, name, rng, engine, device)
    batch = int(config.get("batch_size", 64))
    for epoch in range(start + 1, int(config.get("epochs", 20)) + 1):
        model.train()
        order = torch.as_tensor(rng.permutation(size), device=device)
        total = 0.0
        for i in range(0, size, batch):
            idx = order[i:i + batch]
            optimizer.zero_grad()
            loss = train_loss(hp, t["x_train"][idx], t["y_train"][idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        result = engine.hypergradients(
            lambda h: train_loss(h, t["x_train"], t["y_train"]),
            lambda h: nn.functional.cross_entropy(model(t["x_val"]), t["y_val"]))
        metrics = {"epoch": epoch, "train_loss": total / size, **evaluate(model, t, "val"),
                   **evaluate(model, t, "test")}
        report_hypergradients(result, metrics, state={
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "optimizer_name": name, "rng": rng.bit_generator.state, "epoch": epoch,
            "engine": engine.state_dict()})


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, name: str,
             rng: np.random.Generator, engine: ImplicitEngine, device: torch.device) -> int:
    state = restore_state(map_location=device)
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    if "engine" in state:  # the warm start only: the decays come from the (new) config
        engine.solution = state["engine"]["solution"]
    if state["optimizer_name"] == name:  # PBT may have switched the optimizer
        load_optimizer_state(optimizer, state["optimizer"])
    rng.bit_generator.state = state["rng"]
    return int(state["epoch"])
