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


# ---------------------------------------------------------------- curation
def clusters(n=90, flip=(7, 20, 33), seed=5):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 5, generator=g, dtype=DT) * 3
    labels = torch.arange(n) % 3
    x = torch.cat([centres[labels] + torch.randn(n, 5, generator=g, dtype=DT),
                   torch.ones(n, 1, dtype=DT)], dim=1)
    noisy = labels.clone()
    for i in flip:
        noisy[i] = (labels[i] + 1) % 3
    return x, labels, noisy


def test_suspects_are_the_flipped_labels():
    from autometa.data.curation import dataset_derivative, suspects

    x, _, noisy = clusters()
    _, grad = dataset_derivative(x, noisy, ridge=1.0)
    flagged = set(torch.nonzero(suspects(grad, share=3 / 90)).flatten().tolist())
    assert flagged == {7, 20, 33}
    with pytest.raises(ValueError, match="share"):
        suspects(grad, share=0)


def test_reweighting_lowers_the_loo_error_and_downweights_wrong_labels():
    from autometa.data.curation import reweight

    x, _, noisy = clusters()
    weights, history = reweight(x, noisy, steps=15, ridge=1.0)
    assert min(history) < history[0]
    assert float(loo_error(x, one_hot(noisy, 3), weights, 1.0)) == pytest.approx(min(history))
    assert weights[[7, 20, 33]].max() < weights.median()
    assert ((weights >= 0) & (weights <= 1)).all()


def test_extension_scores_prefer_a_helpful_sample_and_agree_with_adding_it():
    from autometa.data.curation import extension_scores

    x, labels, _ = clusters(flip=())
    train, pool = slice(0, 30), slice(30, 40)
    pool_labels = labels[pool].clone()
    pool_labels[0] = (pool_labels[0] + 1) % 3                      # a wrongly labelled candidate
    scores = extension_scores(x[train], labels[train], x[pool], pool_labels, ridge=1.0)
    assert int(torch.argmax(scores)) == 0 and scores[0] > 0        # the harmful one scores worst
    # the first-order screen is the derivative of the exact curve at weight 0
    first_order = extension_scores(x[train], labels[train], x[pool], pool_labels, ridge=1.0,
                                   method="derivative")
    alpha = torch.cat([torch.ones(30, dtype=DT), torch.zeros(10, dtype=DT)])
    alpha[30 + 3] = 1e-7
    xs, ys = torch.cat([x[train], x[pool]]), one_hot(torch.cat([labels[train], pool_labels]), 3)
    zero = alpha.clone()
    zero[33] = 0.0
    fd = ((loo_residuals(xs, ys, alpha, 1.0)[:30] ** 2).sum(1).mean()
          - (loo_residuals(xs, ys, zero, 1.0)[:30] ** 2).sum(1).mean()) / 1e-7
    assert float(first_order[3]) == pytest.approx(float(fd), rel=1e-4)

    def train_loo_with(j):
        xs, ys = torch.cat([x[train], x[pool][j:j + 1]]), torch.cat([labels[train],
                                                                      pool_labels[j:j + 1]])
        return float((loo_residuals(xs, one_hot(ys, 3), None, 1.0)[:30] ** 2).sum(1).mean())

    best = int(torch.argmin(scores))
    assert train_loo_with(best) < train_loo_with(0)


def test_group_hypergradients_follow_the_chain_rule():
    from autometa.data.curation import dataset_derivative, group_hypergradients

    x, _, noisy = clusters()
    _, grad = dataset_derivative(x, noisy, ridge=1.0)
    by_class = group_hypergradients(grad, noisy, names={0: "a", 1: "b", 2: "c"})
    eps = 1e-6
    for cls, name in enumerate("abc"):
        up = torch.ones(len(noisy), dtype=DT) + eps * (noisy == cls)
        down = torch.ones(len(noisy), dtype=DT) - eps * (noisy == cls)
        fd = (loo_error(x, one_hot(noisy, 3), up, 1.0) - loo_error(x, one_hot(noisy, 3), down,
                                                                     1.0)) / (2 * eps)
        assert by_class[name] == pytest.approx(float(fd), rel=1e-6)


def test_relabel_keeps_agreed_replaces_confident_and_drops_the_rest():
    from autometa.data.curation import relabel

    labels = torch.tensor([0, 1, 2, 0, 1])
    suspect = torch.tensor([False, True, True, True, False])
    probs = torch.tensor([[0.1, 0.9, 0.0],      # unflagged: kept as labelled though the model disagrees
                          [0.2, 0.7, 0.1],      # suspect, model agrees: kept
                          [0.8, 0.1, 0.1],      # suspect, confident disagreement: relabelled to 0
                          [0.1, 0.45, 0.45],    # suspect, unsure: dropped
                          [0.3, 0.4, 0.3]])
    new, keep = relabel(labels, suspect, probs, confidence=0.5)
    assert new.tolist() == [0, 1, 0, 0, 1]
    assert keep.tolist() == [True, True, True, False, True]
    with pytest.raises(ValueError, match="confidence"):
        relabel(labels, suspect, probs, confidence=1.0)
    with pytest.raises(ValueError, match="N rows"):
        relabel(labels, suspect[:3], probs)


def test_two_pass_curation_recovers_flipped_labels():
    """Suspects by the derivative, then a ridge model fitted without them relabels them."""
    from autometa.data.curation import dataset_derivative, relabel, suspects
    from autometa.data.loo import one_hot

    x, labels, noisy = clusters(flip=(7, 20, 33, 46, 59))
    _, grad = dataset_derivative(x, noisy, ridge=1.0)
    flagged = suspects(grad, threshold=0.0)
    assert flagged[[7, 20, 33, 46, 59]].all()
    keep = ~flagged
    w = torch.linalg.solve(x[keep].T @ x[keep] + torch.eye(x.shape[1], dtype=DT),
                           x[keep].T @ one_hot(noisy[keep], 3))
    new, use = relabel(noisy, flagged, (x @ w * 5).softmax(dim=1), confidence=0.5)
    assert (new[use] == labels[use]).all()         # no wrong label left among those kept
    assert use[[7, 20, 33, 46, 59]].all()          # the flipped ones got their labels back


@pytest.mark.parametrize("method", ["cg", "exact"])
def test_validation_derivative_by_the_engine_matches_finite_differences(method):
    from autometa.data.curation import dataset_derivative, suspects, validation_derivative

    x, labels, noisy = clusters()
    xv, yv, _ = clusters(n=60, flip=(), seed=5)       # same centres, fresh clean samples
    weights = torch.linspace(0.5, 1.5, len(noisy), dtype=DT)
    val, grad = validation_derivative(x, noisy, xv, yv, weights, ridge=1.0, method=method)

    def loss(alpha):
        eye = torch.eye(x.shape[1], dtype=DT)
        y = one_hot(noisy, 3)
        w = torch.linalg.solve(x.T @ (alpha[:, None] * x) + eye, x.T @ (alpha[:, None] * y))
        return ((one_hot(yv, 3) - xv @ w) ** 2).sum(1).mean()

    assert val == pytest.approx(float(loss(weights)), rel=1e-12)
    # against autograd through the closed form, every sample
    alpha = weights.clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(loss(alpha), alpha)
    assert torch.allclose(grad, reference, rtol=1e-8, atol=1e-14)
    # against central differences where the derivative is large (flipped labels)
    eps = 1e-5
    for i in (7, 20, 33):
        step = torch.zeros_like(weights)
        step[i] = eps
        fd = (float(loss(weights + step)) - float(loss(weights - step))) / (2 * eps)
        assert float(grad[i]) == pytest.approx(fd, rel=1e-6)
    # both derivatives point at the flipped labels
    _, loo = dataset_derivative(x, noisy, weights, ridge=1.0)
    for derivative in (grad, loo):
        flagged = set(torch.nonzero(suspects(derivative, share=3 / 90)).flatten().tolist())
        assert flagged == {7, 20, 33}
