"""Closed-form leave-one-out error of weighted ridge and its dataset derivative, against brute force."""

from __future__ import annotations

import pytest
import torch

from autometa.data import loo_error, loo_gradient, loo_residuals
from autometa.data.loo import one_hot

DT = torch.float64


def problem(n: int, d: int, c: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=DT)
    y = one_hot(torch.randint(0, c, (n,), generator=g), c)
    alpha = torch.rand(n, generator=g, dtype=DT) * 1.5 + 0.25
    return x, y, alpha


def brute_force_loo(x, y, alpha, ridge):
    """N retrainings, each without sample i."""
    errors = []
    for i in range(len(y)):
        a = alpha.clone()
        a[i] = 0.0
        k = x.T @ (a[:, None] * x) + ridge * torch.eye(x.shape[1], dtype=DT)
        w = torch.linalg.solve(k, x.T @ (a[:, None] * y))
        errors.append(((y[i] - x[i] @ w) ** 2).sum())
    return torch.stack(errors).mean()


@pytest.mark.parametrize("n,d", [(30, 5), (8, 20)])
@pytest.mark.parametrize("form", ["primal", "dual"])
def test_equals_n_retrainings(n, d, form):
    x, y, alpha = problem(n, d)
    assert float(loo_error(x, y, alpha, 0.1, form)) == pytest.approx(
        float(brute_force_loo(x, y, alpha, 0.1)), rel=1e-10)


def test_primal_and_dual_agree_and_auto_picks_by_size():
    for n, d in ((40, 6), (6, 40)):
        x, y, alpha = problem(n, d, seed=1)
        primal = loo_residuals(x, y, alpha, 0.05, "primal")
        dual = loo_residuals(x, y, alpha, 0.05, "dual")
        assert torch.allclose(primal, dual, rtol=1e-9, atol=1e-11)
        assert torch.allclose(loo_residuals(x, y, alpha, 0.05), primal, rtol=1e-9, atol=1e-11)


def test_gradient_matches_central_differences():
    x, y, alpha = problem(12, 4, seed=2)
    _, grad = loo_gradient(x, y, alpha, 0.1)
    eps = 1e-6
    for i in range(len(alpha)):
        up, down = alpha.clone(), alpha.clone()
        up[i] += eps
        down[i] -= eps
        fd = (loo_error(x, y, up, 0.1) - loo_error(x, y, down, 0.1)) / (2 * eps)
        assert float(grad[i]) == pytest.approx(float(fd), rel=1e-6, abs=1e-10)


def test_gradient_is_finite_at_zero_weight_and_both_forms_agree():
    x, y, alpha = problem(10, 15, seed=3)
    alpha[0] = 0.0
    _, g_primal = loo_gradient(x, y, alpha, 0.1, "primal")
    _, g_dual = loo_gradient(x, y, alpha, 0.1, "dual")
    assert torch.isfinite(g_primal).all()
    assert torch.allclose(g_primal, g_dual, rtol=1e-7, atol=1e-10)


def test_stable_for_ill_conditioned_features():
    x, y, alpha = problem(50, 6, seed=4)
    x = torch.cat([x, x[:, :2] * (1 + 1e-9), x[:, 2:3] * 1e6], dim=1)   # near-duplicate, scaled
    primal = loo_error(x, y, alpha, 1e-3, "primal")
    dual = loo_error(x, y, alpha, 1e-3, "dual")
    assert torch.isfinite(primal) and float(primal) == pytest.approx(float(dual), rel=1e-6)


def test_mislabeled_sample_has_a_large_positive_derivative():
    g = torch.Generator().manual_seed(5)
    centres = torch.randn(3, 5, generator=g, dtype=DT) * 4
    labels = torch.arange(60) % 3
    x = centres[labels] + torch.randn(60, 5, generator=g, dtype=DT)
    wrong = labels.clone()
    wrong[7] = (labels[7] + 1) % 3                         # one flipped label
    _, grad = loo_gradient(x, one_hot(wrong, 3), None, 1.0)
    assert int(torch.argmax(grad)) == 7


@pytest.mark.parametrize("bad,match", [
    (lambda x, y: (x[:, :, None], y), "N x D"),
    (lambda x, y: (x, y[:-1]), "targets must be N x C"),
    (lambda x, y: (x.index_fill(0, torch.tensor([0]), float("nan")), y), "NaN"),
    (lambda x, y: (x[:0], y[:0]), "non-empty"),
])
def test_clear_errors(bad, match):
    x, y, _ = problem(6, 3)
    with pytest.raises(ValueError, match=match):
        loo_error(*bad(x, y))
