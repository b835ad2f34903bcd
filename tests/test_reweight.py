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
