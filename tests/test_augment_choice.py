"""The choice policy (TrivialAugment's family), its look-ahead hypergradient and its learner:
the estimator against autograd, finite differences and an exact expectation, at roughly
trained weights; the learner moving the right way where the answer is known; the policy file
and the exported transform reproducing the distribution."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from autometa.augment import ChoicePolicy, LearnedAugment, PolicyLearner, policy_hypergradient
from autometa.augment.choice import ChoiceDraw, apply_choice
from autometa.augment.lookahead import score_advantages
from autometa.augment.policy_file import ChoiceDefinition, load_policy, save_policy
from autometa.space import SpaceError
from autometa.trial.keys import POLICY_SNR, POLICY_STILL, policy_metrics


def per_image(outputs, targets):
    return F.cross_entropy(outputs, targets, reduction="none")


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float64)[:, None]
    return x, torch.tensor(d.target)


def rough_model(x, y, steps=30, seed=0):
    """A small CNN some way into training (not at an optimum)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(),
                          nn.Linear(4 * 64, 10)).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def exact_alignment(model, x, y, v):
    """D_i = grad l_i . v by autograd (per image)."""
    out = []
    params = list(model.parameters())
    for i in range(len(x)):
        grads = torch.autograd.grad(per_image(model(x[i:i + 1]), y[i:i + 1]).sum(), params)
        out.append(sum((g * w).sum() for g, w in zip(grads, v, strict=True)))
    return torch.stack(out)


def val_gradient(model, xv, yv):
    return torch.autograd.grad(per_image(model(xv), yv).mean(), list(model.parameters()))


def test_the_alignment_is_the_directional_derivative_autograd_gives(digits):
    x, y = digits
    model = rough_model(x[:100], y[:100])
    policy = ChoicePolicy(["rotate", "contrast", "brightness"], seed=3).double()
    train, val = (x[100:140], y[100:140]), (x[200:260], y[200:260])
    state = policy.generator.get_state()
    estimates = {}
    for epsilon in (1e-2, 1e-4):  # central differences: error O(epsilon^2)
        policy.generator.set_state(state)
        estimates[epsilon] = policy_hypergradient(model, per_image, policy, train, val, lr=0.1,
                                                  epsilon=epsilon)
    policy.generator.set_state(state)
    draw = policy.sample(40)
    augmented = policy.apply(train[0], draw).detach()
    exact = float(exact_alignment(model, augmented, train[1], val_gradient(model, *val)).mean())
    assert all(h.finite for h in estimates.values())
    assert estimates[1e-2].alignment == pytest.approx(exact, rel=1e-3)
    assert estimates[1e-4].alignment == pytest.approx(exact, rel=1e-8)


def test_ceiling_hypergradients_match_finite_differences_at_rough_weights(digits):
    x, y = digits
    model = rough_model(x[:100], y[:100], steps=15)
    policy = ChoicePolicy(["rotate", "contrast", "brightness"], identity=0.1, ceiling=0.4,
                          seed=5).double()
    train, val = (x[100:160], y[100:160]), (x[300:380], y[300:380])
    lr = 0.1
    state = policy.generator.get_state()
    h = policy_hypergradient(model, per_image, policy, train, val, lr=lr)
    policy.generator.set_state(state)
    draw = policy.sample(60)
    v = val_gradient(model, *val)

    def objective(raw):  # J(rho) with the same draws; dL_val(w')/drho = -lr dJ/drho
        images = apply_choice(train[0], policy.operations, torch.sigmoid(raw), draw).detach()
        return float(exact_alignment(model, images, train[1], v).mean())

    raw = policy.raw_ceiling.detach().clone()
    for k in range(len(policy.operations)):
        step = torch.zeros_like(raw)
        step[k] = 1e-4
        fd = -lr * (objective(raw + step) - objective(raw - step)) / 2e-4
        assert float(h.raw_ceiling[k]) == pytest.approx(fd, rel=2e-3, abs=1e-9), k
    assert (h.raw_ceiling_se > 0).all()


def test_the_score_estimate_of_the_weights_is_unbiased_within_its_standard_error(digits):
    x, y = digits
    model = rough_model(x[:100], y[:100], steps=20)
    ops = ["contrast", "brightness"]
    policy = ChoicePolicy(ops, identity=0.3, ceiling=0.6, seed=11).double()
    train, val = (x[100:130], y[100:130]), (x[300:400], y[300:400])
    lr = 0.1
    state = policy.generator.get_state()
    h = policy_hypergradient(model, per_image, policy, train, val, lr=lr, draws=200)
    policy.generator.set_state(state)
    plain = policy_hypergradient(model, per_image, policy, train, val, lr=lr, draws=200,
                                 control_variate=False)
    # exact: dJ/dtheta_j = sum_k pi_k ([j = k] - pi_j) E_u,s[mean_i D_ik] (midpoint rule on u)
    v = val_gradient(model, *val)
    n = len(train[0])
    expected = [float(exact_alignment(model, train[0], train[1], v).mean())]  # identity
    grid = (torch.arange(16, dtype=torch.float64) + 0.5) / 16
    for k in range(1, len(ops) + 1):
        values = []
        for u in grid:
            for sign in (-1.0, 1.0):
                draw = ChoiceDraw(torch.full((n,), k), torch.full((n,), float(u)),
                                  torch.full((n,), sign, dtype=torch.float64),
                                  torch.full((n, 2), 0.5, dtype=torch.float64))
                images = policy.apply(train[0], draw).detach()
                values.append(float(exact_alignment(model, images, train[1], v).mean()))
        expected.append(float(np.mean(values)))
    pi = policy.probabilities().detach()
    e = torch.tensor(expected, dtype=torch.float64)
    exact = -lr * pi * (e - (pi * e).sum())
    gap = (h.logits.double() - exact).abs()
    assert (gap <= 4 * h.logits_se.double() + 1e-12).all(), (h.logits, exact, h.logits_se)
    assert float(exact.abs().max()) > 2 * float(h.logits_se.max())  # the test can tell
    # the baselines cut the noise (same draws, both unbiased)
    assert ((plain.logits.double() - exact).abs() <= 4 * plain.logits_se.double()).all()
    assert float(h.logits_se.max()) < 0.5 * float(plain.logits_se.min())


def test_the_control_variate_removes_the_images_own_value():
    aligned = torch.tensor([3.0, 5.0, 4.0])
    clean = torch.tensor([1.0, 2.0, 3.0])
    gains = aligned - clean  # 2, 3, 1
    assert score_advantages(aligned, clean).tolist() == pytest.approx(
        [2 - 2.0, 3 - 1.5, 1 - 2.5])
    assert score_advantages(aligned[:1], clean[:1]).tolist() == [float(gains[0])]


def shifted_task(seed, n=200):
    """Patterns drawn centred for training and shifted sideways for validation: a horizontal
    translation helps, inverting the image (solarize at full strength) does not."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(2, (n,), generator=g)
    x = torch.zeros(n, 1, 8, 8, dtype=torch.float64)
    for i, c in enumerate(labels.tolist()):
        if c == 0:
            x[i, 0, 2:6, 3] = 1.0  # a vertical bar
        else:
            x[i, 0, 3, 2:6] = 1.0  # a horizontal bar
    x = (x + 0.05 * torch.rand(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    shifted = torch.roll(x, shifts=2, dims=3)
    return (x, labels), (shifted, labels)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_learner_moves_toward_what_helps_and_away_from_what_hurts(seed):
    (x, y), val = shifted_task(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    policy = ChoicePolicy(["translate_x", "solarize"], ceiling=0.6, seed=seed).double()
    learner = PolicyLearner(policy, model, per_image, lr=0.5, outer_lr=0.1)
    start = policy.probabilities().detach().clone()
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(model(policy(x)), y).backward()
        opt.step()
        result = learner.step((x, y), val)
    p = policy.probabilities().detach()
    assert p[1] > start[1] + 0.1, p  # translate_x
    assert p[2] < start[2], p  # solarize
    assert result.moved > 0.1 and not result.still and result.entropy < math.log(3)


def test_a_policy_that_does_not_move_is_warned_about_and_flagged(caplog):
    (x, y), val = shifted_task(0, n=40)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).double()
    policy = ChoicePolicy(["translate_x"], seed=0).double()
    learner = PolicyLearner(policy, model, per_image, lr=0.1, outer_lr=1e-7, still_after=3)
    with caplog.at_level(logging.WARNING, logger="autometa.augment"):
        results = [learner.step((x, y), val) for _ in range(4)]
    assert [r.still for r in results] == [False, False, True, True]
    assert sum("has moved" in r.message for r in caplog.records) == 1  # once
    metrics = results[-1].metrics()
    assert metrics[POLICY_STILL] == 1.0 and math.isfinite(metrics[POLICY_SNR])
    assert metrics == policy_metrics(results[-1])
    assert set(metrics) >= {"hparams/augment.p.identity", "hparams/augment.ceiling.translate_x",
                            "hypergrad/augment.logit.translate_x",
                            "hypergrad/augment.ceiling_logit.translate_x"}


def test_a_nan_loss_leaves_the_policy_as_it_was():
    (x, y), val = shifted_task(0, n=20)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).double()
    policy = ChoicePolicy(["translate_x", "solarize"], seed=0).double()
    learner = PolicyLearner(policy, model, lambda o, t: per_image(o, t) * float("nan"), lr=0.1)
    before = [p.detach().clone() for p in policy.parameters()]
    result = learner.step((x, y), val)
    assert result.skipped and result.metrics()["hyperstep_skipped"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))


def test_a_restored_learner_continues_exactly():
    (x, y), val = shifted_task(2, n=30)

    def fresh():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).double()
        policy = ChoicePolicy(["translate_x", "rotate"], seed=4).double()
        return policy, PolicyLearner(policy, model, per_image, lr=0.1)

    policy, learner = fresh()
    for _ in range(3):
        learner.step((x, y), val)
    state = {k: (v.copy() if isinstance(v, dict) else v) for k, v in learner.state_dict().items()}
    state = torch.load(_saved(state), weights_only=False)
    expected = learner.step((x, y), val)
    policy2, learner2 = fresh()
    learner2.load_state_dict(state)
    again = learner2.step((x, y), val)
    assert again.probabilities == pytest.approx(expected.probabilities, rel=1e-12)
    assert again.moved == pytest.approx(expected.moved) and learner2.steps == 4


def _saved(state):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_different_seeds_draw_differently_and_one_seed_repeats():
    a, b, c = (ChoicePolicy(seed=s) for s in (0, 1, 0))
    assert not torch.equal(a.sample(50).op, b.sample(50).op)
    assert torch.equal(ChoicePolicy(seed=0).sample(50).op, c.sample(50).op)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown operation"):
        ChoicePolicy(["spin"])
    with pytest.raises(ValueError, match="identity must be"):
        ChoicePolicy(identity=1.0)
    with pytest.raises(ValueError, match="learn"):
        PolicyLearner(ChoicePolicy(), nn.Linear(1, 1), per_image, lr=0.1, learn=("magic",))


def test_the_start_is_trivialaugments_uniform_choice_and_loads_back():
    policy = ChoicePolicy(["rotate", "cutout", "contrast"])
    assert policy.probabilities().tolist() == pytest.approx([0.25] * 4)
    assert policy.entropy() == pytest.approx(math.log(4))
    policy.load_values([0.7, 0.1, 0.1, 0.1], [0.2, 0.3, 0.9])
    assert policy.probabilities().tolist() == pytest.approx([0.7, 0.1, 0.1, 0.1])
    assert policy.ceilings().tolist() == pytest.approx([0.2, 0.3, 0.9])


def test_the_exported_transform_reproduces_the_learned_distribution(tmp_path):
    policy = ChoicePolicy(["rotate", "cutout", "contrast"], seed=0)
    policy.load_values([0.4, 0.3, 0.2, 0.1], [0.8, 0.5, 0.3])
    file = save_policy(policy.to_definition(), tmp_path / "policy.yaml")
    transform = LearnedAugment.from_file(file)
    n = 6000
    counts = {name: 0 for name in policy.names}
    magnitudes = {name: [] for name in policy.operations}
    torch.manual_seed(0)
    for _ in range(n):
        steps = transform.make_params([])["steps"]
        name = steps[0][0] if steps else "identity"
        counts[name] += 1
        if steps:
            magnitudes[name].append(steps[0][1])
    drawn = policy.sample(n)
    for k, (name, p) in enumerate(zip(policy.names, policy.probabilities().tolist(),
                                      strict=True)):
        sd = math.sqrt(p * (1 - p) / n)
        assert abs(counts[name] / n - p) < 4 * sd, name  # the file's transform
        assert abs(float((drawn.op == k).double().mean()) - p) < 4 * sd, name  # the module
    for name, ceiling in zip(policy.operations, policy.ceilings().tolist(), strict=True):
        m = np.array(magnitudes[name])
        assert m.max() <= ceiling + 1e-6 and m.min() >= 0
        # uniform on [0, c]: mean c / 2, sd c / sqrt(12)
        assert abs(m.mean() - ceiling / 2) < 4 * ceiling / math.sqrt(12 * len(m)), name
    image = torch.rand(1, 8, 8)
    assert transform(image).shape == image.shape


def test_a_choice_policy_file_round_trips_and_bad_ones_are_located(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("policy:\n  choose_one:\n    - {op: identity, weight: 0.25}\n"
                    "    - {op: rotate, weight: 0.75, max_magnitude: 0.5}\n")
    definition = load_policy(good)
    assert isinstance(definition, ChoiceDefinition)
    assert [(c.op, c.weight, c.max_magnitude) for c in definition.choices] == [
        ("identity", 0.25, 1.0), ("rotate", 0.75, 0.5)]
    assert "rotate: 0.750, m <= 0.50: up to +-15.0 degrees" in definition.describe()
    cases = {
        "    - {op: identity, weight: 0.5}\n    - {op: rotate, weight: 0.2, max_magnitude: 0.5}\n":
            "weights sum to 0.7",
        "    - {op: identity, weight: 0.5}\n    - {op: spin, weight: 0.5, max_magnitude: 0.5}\n":
            "unknown operation 'spin'",
        "    - {op: identity, weight: 0.5}\n    - {op: rotate, weight: 0.5}\n":
            "max_magnitude: expected a number in [0, 1], got None",
        "    - {op: identity, weight: 0.5, max_magnitude: 0.2}\n"
        "    - {op: rotate, weight: 0.5, max_magnitude: 0.5}\n": "unknown key(s) ['max_magnitude']",
    }
    for body, problem in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text("policy:\n  choose_one:\n" + body)
        with pytest.raises(SpaceError) as err:
            load_policy(bad)
        assert problem in str(err.value) and "bad.yaml:" in str(err.value), str(err.value)
