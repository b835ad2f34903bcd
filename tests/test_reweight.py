"""Learning to Reweight Examples: the look-ahead hypergradient and its use in training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autometa.hypergrad.reweight import reweighted_step, reweighting_weights

DT = torch.float64


def per_sample(outputs, targets):
    return nn.functional.cross_entropy(outputs, targets, reduction="none")


def toy(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 2, generator=g, dtype=DT)
    y = (x[:, 0] > 0).long()
    xv = torch.randn(20, 2, generator=g, dtype=DT)
    yv = (xv[:, 0] > 0).long()
    x[0] = torch.tensor([3.0, 0.0], dtype=DT)   # far on the positive side ...
    y[0] = 0                                    # ... with the wrong label
    model = nn.Linear(2, 2).to(DT)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=DT))
        model.bias.zero_()
    return model, (x, y), (xv, yv)


def test_planted_corrupted_sample_gets_zero_weight():
    model, train, val = toy()
    w = reweighting_weights(model, per_sample, train, val, lr=0.1)
    assert w[0] == 0 and w.sum() == pytest.approx(1.0) and (w >= 0).all()
    assert (w[1:] > 0).float().mean() > 0.5


def test_weights_equal_the_gradient_inner_product_formula():
    """dL_v(theta - lr grad sum eps_i l_i)/d eps_i at 0 = -lr grad L_v . grad l_i."""
    model, (x, y), (xv, yv) = toy(1)
    params = list(model.parameters())
    val_grad = torch.autograd.grad(per_sample(model(xv), yv).mean(), params)
    inner = []
    for i in range(len(x)):
        g = torch.autograd.grad(per_sample(model(x[i:i + 1]), y[i:i + 1]).sum(), params)
        inner.append(sum((a * b).sum() for a, b in zip(val_grad, g, strict=True)))
    raw = torch.clamp(torch.stack(inner) * 0.1, min=0)     # -d eps = lr * <grad L_v, grad l_i>
    w = reweighting_weights(model, per_sample, (x, y), (xv, yv), lr=0.1)
    assert torch.allclose(w, raw / raw.sum(), rtol=1e-10, atol=1e-14)


def test_reweighted_training_ignores_the_corrupted_sample():
    model, train, val = toy(2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(30):
        _, w = reweighted_step(model, optimizer, per_sample, train, val)
        assert w[0] == 0
    x, y = val
    assert (model(x).argmax(1) == y).double().mean() > 0.9


def test_reweighted_train_loss_in_the_hypertrainer_loop():
    """L2RW inside the in-trial loop: the planted wrong label gets weight 0 at every inner step,
    the weight decay still gets a finite hypergradient, and the classifier ends up better on
    clean data than the same loop without reweighting."""
    import itertools

    from autometa.hypergrad.families import Hyperparameter, LogTransform, l2_penalty
    from autometa.hypergrad.loop import HyperTrainer
    from autometa.hypergrad.reweight import ReweightedTrainLoss

    def run(reweighted):
        model, train, val = toy(3)
        decay = Hyperparameter.from_value("decay", torch.tensor(1e-2, dtype=DT), LogTransform(),
                                          low=1e-6, high=1.0)

        def per_sample_with(outputs, targets, values):
            return per_sample(outputs, targets)

        weighted = ReweightedTrainLoss(per_sample_with, val, lr=0.5)

        def train_loss(view, batch, values):
            data = weighted(view, batch, values) if reweighted else \
                per_sample(view(batch[0]), batch[1]).mean()
            return data + l2_penalty(view.params, {"weight": values["decay"]})

        def val_loss(view, batch, values):
            return per_sample(view(batch[0]), batch[1]).mean()

        trainer = HyperTrainer(model, torch.optim.SGD(model.parameters(), lr=0.5), [decay],
                               train_loss, val_loss, inner_steps=5, method="cg",
                               method_options={"maxiter": 20}, outer_lr=0.1)
        batches = itertools.repeat(train)
        zero_every_step = True
        for _ in range(6):
            result = trainer.step(batches, val)
            assert not result.skipped and torch.isfinite(result.hypergrads["decay"]).all()
            if reweighted:
                zero_every_step &= bool(weighted.last_weights[0] == 0)
        return model, zero_every_step

    plain, _ = run(False)
    model, zeroed = run(True)
    assert zeroed
    x, y = toy(4)[2]  # fresh clean samples
    with torch.no_grad():
        clean_loss = {name: float(per_sample(m(x), y).mean()) for name, m in
                      (("plain", plain), ("reweighted", model))}
    assert clean_loss["reweighted"] < 0.9 * clean_loss["plain"], clean_loss
