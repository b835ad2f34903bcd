"""Hyperparameter families: transforms and their chain rule, loss terms, gradients (float64)."""

from __future__ import annotations

import pytest
import torch

from autometa.hypergrad.families import (
    Hyperparameter,
    IdentityTransform,
    LogitTransform,
    LogTransform,
    augmentation_values,
    balanced_cross_entropy,
    l2_penalty,
    smoothed_cross_entropy,
    weighted_mean,
)

DT = torch.float64
TRANSFORMS = [IdentityTransform(), LogTransform(), LogitTransform(0.0, 1.0), LogitTransform(-2.0, 3.0)]


@pytest.mark.parametrize("transform", TRANSFORMS, ids=lambda t: type(t).__name__)
def test_transform_round_trip_and_derivative(transform):
    u = torch.linspace(-3, 3, 13, dtype=DT)
    torch.testing.assert_close(transform.inverse(transform.forward(u)), u)
    auto = torch.func.vmap(torch.func.grad(lambda t: transform.forward(t)))(u)
    torch.testing.assert_close(transform.derivative(u), auto)


@pytest.mark.parametrize("transform", TRANSFORMS, ids=lambda t: type(t).__name__)
def test_chain_rule_gives_the_gradient_in_value_units(transform):
    """dL/dx computed from dL/du equals autograd's dL/dx for L(x) = sum(sin(x) * x)."""
    u = torch.linspace(-1.5, 1.5, 7, dtype=DT, requires_grad=True)
    x = transform.forward(u)
    loss = (torch.sin(x) * x).sum()
    (grad_u,) = torch.autograd.grad(loss, u)
    x_leaf = x.detach().requires_grad_()
    (grad_x,) = torch.autograd.grad((torch.sin(x_leaf) * x_leaf).sum(), x_leaf)
    torch.testing.assert_close(transform.value_grad(u.detach(), grad_u), grad_x)


def test_bounded_transforms_reject_values_outside():
    with pytest.raises(ValueError, match="> 0"):
        LogTransform().inverse(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="strictly inside"):
        LogitTransform(0.0, 1.0).inverse(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="below high"):
        LogitTransform(1.0, 1.0)


def test_hyperparameter_from_value():
    h = Hyperparameter.from_value("decay", torch.tensor(1e-3, dtype=DT), LogTransform())
    assert float(h.value()) == pytest.approx(1e-3)
    assert float(h.value_grad(torch.tensor(2.0, dtype=DT))) == pytest.approx(2.0 / 1e-3)


def test_l2_penalty_groups_and_per_weight():
    params = {"a": torch.ones(2, 3, dtype=DT), "b": 2 * torch.ones(4, dtype=DT)}
    group = l2_penalty(params, {"all": torch.tensor(0.5, dtype=DT)}, {"all": ["a", "b"]})
    assert float(group) == pytest.approx(0.5 * 0.5 * (6 + 16))
    per_weight = {"a": torch.arange(6, dtype=DT).reshape(2, 3)}
    assert float(l2_penalty(params, per_weight)) == pytest.approx(0.5 * 15)
    with pytest.raises(KeyError, match="unknown parameter 'c'"):
        l2_penalty(params, {"g": torch.tensor(1.0)}, {"g": ["c"]})


def test_smoothed_cross_entropy_matches_torch_and_is_differentiable():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=gen, dtype=DT)
    targets = torch.randint(0, 5, (16,), generator=gen)
    for eps in (0.0, 0.1, 0.4):
        ref = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=eps)
        torch.testing.assert_close(smoothed_cross_entropy(logits, targets, eps), ref)
    eps = torch.tensor(0.2, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: smoothed_cross_entropy(logits, targets, e), (eps,))


def test_class_weights_scale_each_samples_smoothed_loss():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 4, generator=gen, dtype=DT)
    targets = torch.randint(0, 4, (12,), generator=gen)
    weights = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=DT)
    per_sample = torch.nn.functional.cross_entropy(logits, targets, reduction="none",
                                                   label_smoothing=0.1)
    expected = (weights[targets] * per_sample).mean()
    torch.testing.assert_close(smoothed_cross_entropy(logits, targets, 0.1, weights), expected)


def test_balanced_cross_entropy_weights_and_adjustments():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(10, 3, generator=gen, dtype=DT)
    targets = torch.randint(0, 3, (10,), generator=gen)
    weights = torch.tensor([1.0, 2.0, 0.5], dtype=DT)
    shift = torch.tensor([0.3, -0.2, 0.0], dtype=DT)
    expected = (weights[targets] * torch.nn.functional.cross_entropy(
        logits + shift, targets, reduction="none")).mean()
    torch.testing.assert_close(balanced_cross_entropy(logits, targets, weights, shift), expected)
    w = weights.clone().requires_grad_()
    s = shift.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: balanced_cross_entropy(logits, targets, a, b), (w, s))


def test_weighted_mean_and_shape_check():
    losses = torch.tensor([1.0, 2.0, 3.0], dtype=DT)
    assert float(weighted_mean(losses, torch.tensor([1.0, 0.0, 2.0], dtype=DT))) == \
        pytest.approx(7.0 / 3.0)
    with pytest.raises(ValueError, match="differ in shape"):
        weighted_mean(losses, torch.ones(2, dtype=DT))


def test_augmentation_values_stay_in_range():
    p, m = augmentation_values(torch.tensor([-50.0, 0.0, 50.0], dtype=DT),
                               torch.tensor([-50.0, 0.0, 50.0], dtype=DT), (0.1, 0.9))
    assert torch.all((p >= 0) & (p <= 1)) and torch.all((m >= 0.1) & (m <= 0.9))
    assert float(m[1]) == pytest.approx(0.5)
