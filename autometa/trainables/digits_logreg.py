"""Digits logistic regression whose L2 penalties are learned by hypergradient inside the trial.

Multinomial logistic regression on :func:`~autometa.data.digits.load_digits_standardized`
(300 train / 500 validation / 997 test), penalty ``0.5 * sum_j lambda_j ||W_j||^2`` over the
input pixels j. Each inner solve trains to convergence with L-BFGS (float64); the
hypergradient of the validation cross-entropy is implicit (``method``).

Config keys:

==================== ========== ===========================================================
key                  default    meaning
==================== ========== ===========================================================
penalty              1e-2       one shared value, or a mapping of 64 values (one per pixel,
                                in the mapping's order), e.g. a search-space group
hypersteps           0          hypergradient-descent steps inside the trial; 0 trains once
method               ``auto``   hypergradient method
outer_lr             0.5        Adam's learning rate on log(penalty)
penalty_low/high     e^-8, e^2  bounds the penalties are clipped to
holdout              0          validation samples held out of ``val_loss`` and its
                                hypergradient, reported as ``holdout_loss`` (to choose when
                                to stop without overfitting the validation set)
split_seed           0          seed of the train / validation / test permutation (another
                                seed: another split of the same 1,797 digits)
fail_at_hyperstep    (none)     fault injection for tests (not after a restore)
==================== ========== ===========================================================

Every report (one per hyperstep, and a last one) carries ``val_loss``, ``val_accuracy``,
``test_loss``, ``test_accuracy`` and, per penalty, ``hparams/<name>`` and
``hypergrad/<name>`` (d val_loss / d penalty) where ``<name>`` is ``penalty`` or
``penalty.<key>``, with a checkpoint of the whole trainer.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import nn

from autometa.data.digits import load_digits_standardized
from autometa.hypergrad.families import Hyperparameter, LogTransform
from autometa.hypergrad.loop import HyperTrainer
from autometa.trial.tune import report_hyperstep, restore_trainer

DT = torch.float64


def penalty_hyperparameters(config: dict[str, Any]) -> list[Hyperparameter]:
    """One log-scale hyperparameter per penalty value in ``config['penalty']``."""
    spec = config.get("penalty", 1e-2)
    low = float(config.get("penalty_low", math.exp(-8)))
    high = float(config.get("penalty_high", math.exp(2)))
    named = {f"penalty.{k}": v for k, v in spec.items()} if isinstance(spec, dict) \
        else {"penalty": spec}
    if len(named) not in (1, 64):
        raise ValueError(f"penalty needs 1 or 64 values (one per pixel), got {len(named)}")
    return [Hyperparameter.from_value(n, torch.tensor(float(v), dtype=DT), LogTransform(), low, high)
            for n, v in named.items()]


def train_digits_logreg(config: dict[str, Any]) -> None:
    """Tune function trainable (see the module docstring)."""
    torch.set_num_threads(1)
    split_seed = config.get("split_seed", 0)
    if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
        raise ValueError(f"split_seed must be a non-negative integer, got {split_seed!r}")
    data = load_digits_standardized(seed=split_seed)
    xt, yt = torch.tensor(data.x_train, dtype=DT), torch.tensor(data.y_train)
    xv, yv = torch.tensor(data.x_val, dtype=DT), torch.tensor(data.y_val)
    holdout = int(config.get("holdout", 0))
    if not 0 <= holdout < len(yv):
        raise ValueError(f"holdout must be in [0, {len(yv) - 1}], got {holdout}")
    xh, yh = xv[len(yv) - holdout:], yv[len(yv) - holdout:]
    xv, yv = xv[:len(yv) - holdout], yv[:len(yv) - holdout]
    xs, ys = torch.tensor(data.x_test, dtype=DT), torch.tensor(data.y_test)
    hparams = penalty_hyperparameters(config)
    names = [h.name for h in hparams]
    model = nn.Linear(64, 10).to(DT)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)

    def train(view, batch, values):
        lam = torch.stack([values[n] for n in names]) if len(names) > 1 else values[names[0]]
        x, y = batch
        penalty = 0.5 * (lam * (view.params["weight"] ** 2).sum(0)).sum()
        return nn.functional.cross_entropy(view(x), y) + penalty

    def val(view, batch, values):
        x, y = batch
        return nn.functional.cross_entropy(view(x), y)

    inner = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-9,
                              tolerance_change=1e-12, history_size=20,
                              line_search_fn="strong_wolfe")
    trainer = HyperTrainer(model, inner, hparams, train, val, inner_steps=1,
                           method=config.get("method", "auto"),
                           outer_lr=float(config.get("outer_lr", 0.5)))
    restored = restore_trainer(trainer)
    hypersteps = int(config.get("hypersteps", 0))
    fail_at = None if restored else config.get("fail_at_hyperstep")
    batches = itertools.repeat((xt, yt))
    for step in range(trainer.steps, hypersteps + 1):
        if fail_at is not None and step == int(fail_at):
            raise RuntimeError(f"fault injected at hyperstep {step} (fail_at_hyperstep)")
        result = trainer.step(batches, (xv, yv), update=step < hypersteps)
        with torch.no_grad():
            logits = model(xs)
            extra = {"test_loss": float(nn.functional.cross_entropy(logits, ys)),
                     "test_accuracy": float((logits.argmax(1) == ys).double().mean()),
                     "val_accuracy": float((model(xv).argmax(1) == yv).double().mean())}
            if holdout:
                extra["holdout_loss"] = float(nn.functional.cross_entropy(model(xh), yh))
        report_hyperstep(trainer, result, extra)
