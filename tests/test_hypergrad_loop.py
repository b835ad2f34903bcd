"""The in-trial loop: it moves theta toward a known optimum, survives NaN, resumes exactly."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from autometa.hypergrad.families import Hyperparameter, LogTransform, l2_penalty
from autometa.hypergrad.loop import DivergenceWarning, HyperTrainer
from autometa.trial import hyperstep_metrics

DT = torch.float64


def ridge_data(seed: int = 1):
    """Few noisy training samples: the best penalty (about 2.4) is well inside the range."""
    gen = torch.Generator().manual_seed(seed)
    d = 8
    w_true = 0.5 * torch.randn(d, generator=gen, dtype=DT)
    x = torch.randn(16, d, generator=gen, dtype=DT)
    y = x @ w_true + 2.0 * torch.randn(16, generator=gen, dtype=DT)
    xv = torch.randn(200, d, generator=gen, dtype=DT)
    yv = xv @ w_true + 2.0 * torch.randn(200, generator=gen, dtype=DT)
    return x, y, xv, yv


def closed_form_val_loss(x, y, xv, yv, lam: float) -> float:
    w = torch.linalg.solve(x.T @ x / len(y) + lam * torch.eye(x.shape[1], dtype=DT), x.T @ y / len(y))
    return float(0.5 * ((xv @ w - yv) ** 2).mean())


def losses():
    def train(view, batch, values):
        x, y = batch
        pred = view(x).squeeze(-1)
        return 0.5 * ((pred - y) ** 2).mean() + l2_penalty(view.params, {"weight": values["lam"]})

    def val(view, batch, values):
        x, y = batch
        return 0.5 * ((view(x).squeeze(-1) - y) ** 2).mean()

    return train, val


def make_trainer(lam0: float = 1e-3, **kwargs):
    torch.manual_seed(0)
    model = nn.Linear(8, 1, bias=False).to(DT)
    lam = Hyperparameter.from_value("lam", torch.tensor(lam0, dtype=DT), LogTransform(),
                                    low=1e-6, high=1e3)
    train, val = losses()
    options = {"inner_steps": 50, "method": "cg", "method_options": {"maxiter": 50},
               "outer_lr": 0.2, **kwargs}
    return HyperTrainer(model, torch.optim.SGD(model.parameters(), lr=0.2), [lam], train, val,
                        **options)


def test_loop_reaches_the_known_optimal_penalty():
    x, y, xv, yv = ridge_data()
    grid = np.exp(np.linspace(math.log(1e-4), math.log(1e2), 400))
    curve = [closed_form_val_loss(x, y, xv, yv, g) for g in grid]
    best_lam, best_val = grid[int(np.argmin(curve))], min(curve)
    assert 0.5 < best_lam < 20  # an interior optimum, far from the start (1e-3)
    trainer = make_trainer()
    batches = itertools.repeat((x, y))
    first = trainer.step(batches, (xv, yv))
    for _ in range(120):
        result = trainer.step(batches, (xv, yv))
    lam = float(result.values["lam"])
    assert abs(math.log(lam) - math.log(best_lam)) < 0.25, (lam, best_lam)
    assert result.val_loss < first.val_loss
    assert result.val_loss == pytest.approx(best_val, rel=2e-3)
    assert result.info.converged


def test_reported_hypergradient_is_in_value_units():
    x, y, xv, yv = ridge_data()
    trainer = make_trainer(lam0=0.1, inner_steps=2000, outer_lr=0.0)
    result = trainer.step(itertools.repeat((x, y)), (xv, yv))
    h = 1e-5
    fd = (closed_form_val_loss(x, y, xv, yv, 0.1 + h) -
          closed_form_val_loss(x, y, xv, yv, 0.1 - h)) / (2 * h)
    assert float(result.hypergrads["lam"]) == pytest.approx(fd, rel=1e-4)
    metrics = hyperstep_metrics(result)
    assert metrics["hparams/lam"] == pytest.approx(0.1)
    assert metrics["hypergrad/lam"] == pytest.approx(fd, rel=1e-4)


def test_values_never_leave_their_bounds():
    x, y, xv, yv = ridge_data()
    trainer = make_trainer(lam0=1e-5, outer_lr=5.0)
    trainer.hparams[0].low, trainer.hparams[0].high = 1e-5, 2e-5
    for _ in range(5):
        result = trainer.step(itertools.repeat((x, y)), (xv, yv))
        assert 1e-5 * (1 - 1e-9) <= float(result.values["lam"]) <= 2e-5 * (1 + 1e-9)


def test_nan_inner_loss_skips_without_corrupting_state():
    x, y, xv, yv = ridge_data()
    trainer = make_trainer()
    trainer.step(itertools.repeat((x, y)), (xv, yv))
    before = {k: v.clone() for k, v in trainer.state_dict()["model"].items()}
    raw_before = trainer.hparams[0].raw.detach().clone()
    bad = (x, torch.full_like(y, float("nan")))
    with pytest.warns(DivergenceWarning, match="inner loss is nan"):
        result = trainer.step(itertools.repeat(bad), (xv, yv))
    assert result.skipped
    assert torch.equal(trainer.hparams[0].raw.detach(), raw_before)
    for k, v in trainer.state_dict()["model"].items():
        assert torch.equal(v, before[k])
    good = trainer.step(itertools.repeat((x, y)), (xv, yv))  # and the loop goes on
    assert not good.skipped


def test_nan_hypergradient_skips_the_hyperstep():
    x, y, xv, yv = ridge_data()
    trainer = make_trainer()
    raw_before = trainer.hparams[0].raw.detach().clone()
    bad_val = (xv, torch.full_like(yv, float("inf")))
    with pytest.warns(DivergenceWarning, match="non-finite hypergradient"):
        result = trainer.step(itertools.repeat((x, y)), bad_val)
    assert result.skipped and torch.equal(trainer.hparams[0].raw.detach(), raw_before)


def test_state_dict_resumes_exactly():
    x, y, xv, yv = ridge_data()
    a = make_trainer()
    a.step(itertools.repeat((x, y)), (xv, yv))
    state = a.state_dict()
    b = make_trainer(lam0=0.5)  # different start: everything must come from the state
    b.load_state_dict(state)
    ra = a.step(itertools.repeat((x, y)), (xv, yv))
    rb = b.step(itertools.repeat((x, y)), (xv, yv))
    assert float(ra.values["lam"]) == float(rb.values["lam"]) and ra.val_loss == rb.val_loss
    assert b.steps == a.steps == 2


def test_batchnorm_buffers_untouched_by_the_hypergradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1)).to(DT)
    lam = Hyperparameter.from_value("lam", torch.tensor(1e-2, dtype=DT), LogTransform())

    def train(view, batch, values):
        x, y = batch
        penalty = sum(0.5 * values["lam"] * (p ** 2).sum() for p in view.params.values())
        return 0.5 * ((view(x).squeeze(-1) - y) ** 2).mean() + penalty

    def val(view, batch, values):
        x, y = batch
        return 0.5 * ((view(x).squeeze(-1) - y) ** 2).mean()

    trainer = HyperTrainer(model, torch.optim.SGD(model.parameters(), lr=0.05), [lam], train, val,
                           inner_steps=3, method="cg", method_options={"maxiter": 5})
    x, y, xv, yv = ridge_data()
    trainer.step(itertools.repeat((x, y)), (xv, yv))
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    grads, val_loss, _ = trainer.hypergradient((x, y), (xv, yv))
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n
    assert torch.isfinite(grads["lam"]) and math.isfinite(val_loss)
    assert model.training  # the mode is restored
