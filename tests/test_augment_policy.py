"""Augmentation policies: exact draws in evaluation, relaxed gates in training, reproducible
under a seed, gradients to every probability and magnitude, and learning in the in-trial
hypergradient loop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from autometa.augment import AugmentationPolicy, apply_op, apply_policy, sample_noise
from autometa.augment.policy import gates

SUBS = [["rotate", "contrast"], ["cutout", "shear_x"], ["solarize", "translate_y"]]


def digits(n=64, dtype=torch.float32):
    data = load_digits()
    x = torch.as_tensor(data.images[:n] / 16.0, dtype=dtype).unsqueeze(1)
    return x, torch.as_tensor(data.target[:n])


def test_the_same_seed_gives_the_same_augmentation():
    x, _ = digits()
    outs = [AugmentationPolicy(SUBS, seed=seed)(x) for seed in (3, 3, 4)]
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_evaluation_applies_each_operation_with_its_probability_exactly():
    x, _ = digits(32)
    policy = AugmentationPolicy(SUBS, probability=0.4, magnitude=0.6, seed=0).eval()
    p = torch.tensor([[0.2, 0.7], [0.5, 0.9], [0.3, 0.6]])
    m = torch.tensor([[0.3, 0.8], [0.4, 0.2], [0.9, 0.5]])
    policy.load_values(p, m)
    noise = policy.sample_noise(x)
    out = policy(x, noise)
    for i in range(len(x)):  # one image at a time, an operation applied when u > 1 - p
        s, y = int(noise.sub_policy[i]), x[i:i + 1]
        for k, name in enumerate(SUBS[s]):
            if noise.uniform[i, k] > 1 - p[s, k]:
                y = apply_op(name, y, m[s, k].reshape(1), noise.sign[i, k:k + 1],
                             noise.centres[i, k:k + 1])
        assert torch.allclose(out[i:i + 1], y, atol=1e-5), i


def test_gates_fire_with_their_probability_and_relax_to_the_exact_draw():
    g = torch.Generator().manual_seed(0)
    noise = sample_noise(20000, 1, 1, g, dtype=torch.float64)
    p = torch.tensor(0.3, dtype=torch.float64)
    hard = gates(p, noise.uniform[:, 0], None)
    assert abs(float(hard.mean()) - 0.3) < 5 * np.sqrt(0.3 * 0.7 / 20000)
    relaxed = gates(p, noise.uniform[:, 0], 1e-3)
    score = torch.logit(p) + torch.log(noise.uniform[:, 0]) - torch.log1p(-noise.uniform[:, 0])
    far = score.abs() > 0.05
    assert torch.allclose(relaxed[far], hard[far], atol=1e-6)


def test_training_gradients_reach_every_probability_and_magnitude():
    x, _ = digits(96, torch.float64)
    policy = AugmentationPolicy(SUBS, seed=1).double().train()
    out = policy(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    (out * torch.linspace(0, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    for grad in (policy.raw_probability.grad, policy.raw_magnitude.grad):
        assert torch.isfinite(grad).all() and (grad != 0).all()


def test_bad_policies_are_clear_errors():
    with pytest.raises(ValueError, match="unknown operation 'blur'"):
        AugmentationPolicy([["rotate", "blur"]])
    with pytest.raises(ValueError, match="same number of operations"):
        AugmentationPolicy([["rotate"], ["rotate", "contrast"]])
    with pytest.raises(ValueError, match=r"probability must be in \(0, 1\)"):
        AugmentationPolicy(SUBS, probability=1.0)
    x, _ = digits(4)
    with pytest.raises(ValueError, match="must be"):
        apply_policy(x, SUBS, torch.full((2, 2), 0.5), torch.full((2, 2), 0.5),
                     sample_noise(4, 3, 2))


def test_policy_parameters_move_after_one_hyperstep():
    """The policy's probabilities and magnitudes are hyperparameters of the training loss,
    learned by implicit differentiation in the in-trial loop like any other."""
    from autometa.hypergrad.loop import HyperTrainer
    from autometa.trial import hyperstep_metrics

    torch.manual_seed(0)
    x, y = digits(256)
    xv, yv = digits(400)
    xv, yv = xv[256:], yv[256:]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    policy = AugmentationPolicy(SUBS, probability=0.5, magnitude=0.3, seed=0)
    hparams = policy.hyperparameters()
    before = [h.raw.clone() for h in hparams]

    def batches():
        for i in itertools.count():
            rows = torch.arange(64) + 64 * (i % 4)
            yield x[rows], y[rows], policy.sample_noise(x[rows])

    def train_loss(view, batch, values):
        images, labels, noise = batch
        return torch.nn.functional.cross_entropy(view(policy.train_images(images, noise, values)),
                                                 labels)

    def val_loss(view, batch, values):
        return torch.nn.functional.cross_entropy(view(batch[0]), batch[1])

    trainer = HyperTrainer(model, torch.optim.SGD(model.parameters(), lr=0.5), hparams,
                           train_loss, val_loss, inner_steps=10, method="cg",
                           method_options={"maxiter": 10}, damping=0.01, outer_lr=0.1)
    result = trainer.step(batches(), (xv, yv))
    assert not result.skipped
    for h, old in zip(hparams, before, strict=True):
        assert not torch.equal(h.raw, old) and torch.isfinite(h.raw).all()
    metrics = hyperstep_metrics(result)
    assert {"hypergrad/augment.probability.0", "hparams/augment.magnitude.5"} <= set(metrics)
    values = trainer.values()
    assert ((values["augment.probability"] > 0) & (values["augment.probability"] < 1)).all()
    policy.load_values(values["augment.probability"], values["augment.magnitude"])
    assert torch.allclose(policy.probability(), values["augment.probability"], atol=1e-6)


def test_policy_hypergradient_equals_finite_differences_at_an_optimum():
    """Implicit differentiation through the relaxed policy: at converged weights (a convex
    model, L-BFGS), d val_loss / d (probability, magnitude) equals central finite differences
    of the validation loss after retraining, for fixed draws."""
    from autometa.hypergrad.loop import HyperTrainer

    x, y = digits(100, torch.float64)
    xv, yv = digits(400, torch.float64)
    xv, yv = xv[100:], yv[100:]

    def fit(p, m):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).double()
        policy = AugmentationPolicy([["rotate", "contrast"]], seed=0).double()
        policy.load_values(p, m)
        noise = policy.sample_noise(x)

        def train_loss(view, batch, values):
            images = policy.train_images(batch[0], batch[2], values)
            return torch.nn.functional.cross_entropy(view(images), batch[1]) + \
                1e-2 * sum((w ** 2).sum() for w in view.params.values())

        def val_loss(view, batch, values):
            return torch.nn.functional.cross_entropy(view(batch[0]), batch[1])

        optimizer = torch.optim.LBFGS(model.parameters(), max_iter=100, history_size=50,
                                      tolerance_grad=1e-12, tolerance_change=1e-14,
                                      line_search_fn="strong_wolfe")
        trainer = HyperTrainer(model, optimizer, policy.hyperparameters(), train_loss, val_loss,
                               inner_steps=5, method="cg",
                               method_options={"maxiter": 200, "tol": 1e-12}, outer_lr=0.0)
        return trainer.step(itertools.repeat((x, y, noise)), (xv, yv), update=False)

    p = torch.tensor([[0.6, 0.4]], dtype=torch.float64)
    m = torch.tensor([[0.5, 0.7]], dtype=torch.float64)
    grads = fit(p, m).hypergrads
    h = 1e-4
    for name in ("augment.probability", "augment.magnitude"):
        for k in range(2):
            step = torch.zeros_like(p)
            step[0, k] = h
            up = fit(p + step, m) if name.endswith("probability") else fit(p, m + step)
            down = fit(p - step, m) if name.endswith("probability") else fit(p, m - step)
            numeric = (up.val_loss - down.val_loss) / (2 * h)
            assert float(grads[name][0, k]) == pytest.approx(numeric, rel=1e-3), (name, k)
