"""UnrolledEngine: learning rate and momentum of a user's own optimizer, against the functional
unroll and finite differences of the whole training run (float64)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autometa.hypergrad import Hyperparameters, unrolled
from autometa.hypergrad.forward import UnrolledEngine, combine
from autometa.space import space_from_dict

DT = torch.float64
SPACE = space_from_dict({"parameters": {
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0, "differentiable": True},
    "momentum": {"type": "uniform", "low": 0.0, "high": 0.99, "differentiable": True},
}})


def _task():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=gen, dtype=DT), torch.randn(40, generator=gen, dtype=DT)
    xv, yv = torch.randn(30, 3, generator=gen, dtype=DT), torch.randn(30, generator=gen, dtype=DT)
    w0 = torch.randn(3, generator=gen, dtype=DT)
    return x, y, xv, yv, w0


def _run(kind: str, lr: float, momentum: float, steps: int, decay: float = 0.0, tanh=False,
         scale: float = 1.0):
    """Train a linear (or tanh) model with a real torch optimizer; return model, engine, val."""
    x, y, xv, yv, w0 = _task()
    model = nn.Linear(3, 1, bias=False, dtype=DT)
    with torch.no_grad():
        model.weight.copy_(w0[None])
    act = torch.tanh if tanh else (lambda t: t)
    hp = Hyperparameters.from_config({"lr": lr, "momentum": momentum}, SPACE, dtype=DT)
    if kind == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=decay)
        engine = UnrolledEngine(model, opt, hp, {"lr": "lr"})
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=decay)
        engine = UnrolledEngine(model, opt, hp)
    for _ in range(steps):
        engine.step(0.5 * scale * ((act(model(x).squeeze(1)) - y) ** 2).mean())
    result = engine.hypergradients(lambda hp: 0.5 * ((act(model(xv).squeeze(1)) - yv) ** 2).mean())
    return model, engine, result


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
def test_matches_the_functional_unroll(kind):
    x, y, xv, yv, w0 = _task()
    lr, mu, steps = 0.05, (0.9 if kind == "momentum" else 0.0), 12
    _, _, result = _run("adam" if kind == "adam" else "sgd", lr, mu, steps)

    def train(p, h):
        return 0.5 * ((x @ p["w"] - y) ** 2).mean()

    def val(p, h):
        return 0.5 * ((xv @ p["w"] - yv) ** 2).mean()

    hparams = {"lr": torch.tensor(lr, dtype=DT), "mom": torch.tensor(mu, dtype=DT)}
    ref, _ = unrolled(train, val, {"w": w0}, hparams, steps=steps, optimizer=kind, lr="lr",
                      momentum="mom" if kind == "momentum" else 0.9)
    assert float(result.grads["lr"]) == pytest.approx(float(ref["lr"]), rel=1e-6)
    if kind == "momentum":
        assert float(result.grads["momentum"]) == pytest.approx(float(ref["mom"]), rel=1e-6)
    assert result.info.converged and result.info.method == "unrolled"


@pytest.mark.parametrize("kind,setting", [("sgd", "lr"), ("sgd", "momentum"), ("adam", "lr")])
def test_matches_finite_differences_of_the_whole_run_with_weight_decay_and_a_nonlinearity(
        kind, setting):
    lr, mu, steps, decay = 0.05, 0.8, 15, 0.1
    _, _, result = _run(kind, lr, mu, steps, decay=decay, tanh=True)
    h = 1e-6
    shifted = []
    for sign in (1, -1):
        args = {"lr": lr, "momentum": mu}
        args[setting] += sign * h
        shifted.append(_run(kind, args["lr"], args["momentum"], steps, decay, tanh=True)[2].val_loss)
    numeric = (shifted[0] - shifted[1]) / (2 * h)
    assert float(result.grads[setting]) == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_the_unroll_restarts_after_each_call_and_resumes_exactly():
    model, engine, first = _run("sgd", 0.05, 0.9, 5)
    x, y, xv, yv, _ = _task()
    state = engine.state_dict()
    assert engine.unrolled == 0 and state["unrolled"] == 0
    result = engine.hypergradients(lambda hp: ((model(xv).squeeze(1) - yv) ** 2).mean())
    assert float(result.grads["lr"]) == 0.0 and "no step" in result.info.message
    engine.step(0.5 * ((model(x).squeeze(1) - y) ** 2).mean())
    saved = engine.state_dict()
    again = UnrolledEngine(model, engine.optimizer, engine.hparams)
    again.load_state_dict(saved)
    assert all(torch.equal(a, b) for a, b in zip(again.tangents["lr"]["w"],
                                                 engine.tangents["lr"]["w"], strict=True))


def test_the_learning_rate_used_is_the_hyperparameter_and_combine_merges():
    model, engine, result = _run("sgd", 0.05, 0.0, 3)
    assert engine.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    engine.hparams.set("lr", 0.2)
    x, y, _, _, _ = _task()
    engine.step(0.5 * ((model(x).squeeze(1) - y) ** 2).mean())
    assert engine.optimizer.param_groups[0]["lr"] == pytest.approx(0.2)
    both = combine(result, result)
    assert set(both.grads) == {"lr", "momentum"} and both.info.converged


def test_unsupported_optimizers_and_settings_are_named():
    model = nn.Linear(2, 1)
    hp = Hyperparameters.from_config({"lr": 0.1, "momentum": 0.5}, SPACE)
    with pytest.raises(ValueError, match="RMSprop: only"):
        UnrolledEngine(model, torch.optim.RMSprop(model.parameters()), hp)
    with pytest.raises(ValueError, match="Adam has no differentiable setting"):
        UnrolledEngine(model, torch.optim.Adam(model.parameters()), hp, {"momentum": "momentum"})
    with pytest.raises(ValueError, match="Nesterov"):
        UnrolledEngine(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                              nesterov=True), hp)


def test_a_diverged_run_is_reported_not_finite():
    _, _, result = _run("sgd", 0.9, 0.0, 400, scale=100.0)   # lr x curvature >> 2
    assert not math.isfinite(float(result.grads["lr"]))
    assert not result.info.converged and not result.info.finite and "diverged" in result.info.message


def _run_in_two(kind: str, carry: float, lrs: tuple[float, float], steps: int = 12,
                mu: float = 0.8):
    """``steps`` steps of a tanh model with a hypergradient call half way; the learning rate of
    each half given; returns the second call's result."""
    x, y, xv, yv, w0 = _task()
    model = nn.Linear(3, 1, bias=False, dtype=DT)
    with torch.no_grad():
        model.weight.copy_(w0[None])
    hp = Hyperparameters.from_config({"lr": lrs[0], "momentum": mu}, SPACE, dtype=DT)
    if kind == "adam":
        engine = UnrolledEngine(model, torch.optim.Adam(model.parameters(), lr=lrs[0]), hp,
                                {"lr": "lr"}, carry=carry)
    else:
        engine = UnrolledEngine(model, torch.optim.SGD(model.parameters(), lr=lrs[0], momentum=mu),
                                hp, carry=carry)
    val = lambda hp: 0.5 * ((torch.tanh(model(xv).squeeze(1)) - yv) ** 2).mean()  # noqa: E731
    result = None
    for half, lr in enumerate(lrs):
        engine.hparams.set("lr", lr)
        for _ in range(steps // 2):
            engine.step(0.5 * ((torch.tanh(model(x).squeeze(1)) - y) ** 2).mean())
        result = engine.hypergradients(val)
        if half == 0:
            assert engine.since_call == 0 and engine.unrolled == (0 if carry == 0 else steps // 2)
    return result


@pytest.mark.parametrize("kind", ["momentum", "adam"])
@pytest.mark.parametrize("carry", [0.0, 0.5, 1.0])
def test_carry_weights_earlier_steps_as_stated(kind, carry):
    # With carry c the result after the second call is d L_val / d delta for the run whose
    # first half used lr + c delta and second half lr + delta: checked by re-running it.
    lr, h = 0.05, 1e-6
    result = _run_in_two(kind, carry, (lr, lr))
    shifted = [_run_in_two(kind, carry, (lr + sign * carry * h, lr + sign * h)).val_loss
               for sign in (1, -1)]
    numeric = (shifted[0] - shifted[1]) / (2 * h)
    assert float(result.grads["lr"]) == pytest.approx(numeric, rel=1e-5, abs=1e-10)
    if carry == 0.0:  # the last half alone: smaller than the whole run's here
        whole = _run_in_two(kind, 1.0, (lr, lr))
        assert abs(float(result.grads["lr"])) < abs(float(whole.grads["lr"]))


def test_carry_one_is_the_functional_unroll_of_the_whole_run():
    x, y, xv, yv, w0 = _task()
    steps, lr, mu = 12, 0.05, 0.8
    result = _run_in_two("momentum", 1.0, (lr, lr), steps=steps, mu=mu)
    act = torch.tanh
    ref, _ = unrolled(lambda p, h: 0.5 * ((act(x @ p["w"]) - y) ** 2).mean(),
                      lambda p, h: 0.5 * ((act(xv @ p["w"]) - yv) ** 2).mean(), {"w": w0},
                      {"lr": torch.tensor(lr, dtype=DT)}, steps=steps, optimizer="momentum",
                      lr="lr", momentum=mu)
    assert float(result.grads["lr"]) == pytest.approx(float(ref["lr"]), rel=1e-8)


def test_carry_is_checked_and_kept_in_the_state():
    model = nn.Linear(2, 1)
    hp = Hyperparameters.from_config({"lr": 0.1, "momentum": 0.5}, SPACE)
    for bad in (-0.1, 1.5, True, "1", math.nan):
        with pytest.raises(ValueError, match="carry must be a number in"):
            UnrolledEngine(model, torch.optim.SGD(model.parameters(), lr=0.1), hp, carry=bad)
    x = torch.randn(8, 2)
    engine = UnrolledEngine(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5), hp,
                            carry=1.0)
    for _ in range(3):
        engine.step((model(x) ** 2).mean())
    engine.hypergradients(lambda hp: (model(x) ** 2).mean())
    engine.step((model(x) ** 2).mean())
    again = UnrolledEngine(model, engine.optimizer, hp, carry=1.0)
    again.load_state_dict(engine.state_dict())
    assert (again.unrolled, again.since_call, again.steps) == (4, 1, 4)


LOSS_SPACE = space_from_dict({"parameters": {
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0, "differentiable": True},
    "wd": {"type": "loguniform", "low": 1e-5, "high": 1.0, "differentiable": True},
    "strength": {"type": "uniform", "low": 0.0, "high": 1.0, "differentiable": True},
}})


def _mlp_run(kind: str, wd: float, strength: float, steps: int = 24, every: int = 8,
             carry: float = 1.0, lr: float = 0.05, names=("wd", "strength")):
    """A tanh MLP trained on a mixture of clean and 'augmented' (fixed noisy) inputs:
    loss = (1 - s) l(x) + s l(x_aug) + wd/2 |w|^2, with hypergradient calls every ``every``
    steps; returns every call's result and the final validation loss."""
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 3, generator=gen, dtype=DT), torch.randn(32, 1, generator=gen, dtype=DT)
    x_aug = x + 0.7 * torch.randn(32, 3, generator=gen, dtype=DT)
    xv, yv = torch.randn(24, 3, generator=gen, dtype=DT), torch.randn(24, 1, generator=gen, dtype=DT)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    hp = Hyperparameters.from_config({"lr": lr, "wd": wd, "strength": strength}, LOSS_SPACE,
                                     dtype=DT)
    if kind == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9 if kind == "momentum" else 0)
    engine = UnrolledEngine(model, opt, hp, {"lr": "lr"}, carry=carry, loss_hparams=names)

    def loss(hp):
        mse = lambda inputs: ((model(inputs) - y) ** 2).mean()  # noqa: E731
        decay = sum((p ** 2).sum() for p in model.parameters())
        return (1 - hp["strength"]) * mse(x) + hp["strength"] * mse(x_aug) + 0.5 * hp["wd"] * decay

    def val(hp):
        return ((model(xv) - yv) ** 2).mean()

    results = []
    for k in range(steps):
        engine.step(loss)
        if (k + 1) % every == 0:
            results.append(engine.hypergradients(val))
    return results, float(val(None).detach())


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
def test_loss_hyperparameters_match_finite_differences_of_the_whole_run(kind):
    wd, s, eps = 0.02, 0.4, 1e-6
    results, _ = _mlp_run(kind, wd, s)
    final = results[-1]                      # carry=1: the whole run's derivative
    assert final.info.finite and set(final.grads) == {"lr", "wd", "strength"}
    for name, at in (("wd", wd), ("strength", s)):
        shifted = {"wd": wd, "strength": s}
        up = _mlp_run(kind, **{**shifted, name: at + eps})[1]
        down = _mlp_run(kind, **{**shifted, name: at - eps})[1]
        fd = (up - down) / (2 * eps)
        assert abs(fd) > 1e-4                # a derivative that could be got wrong
        assert float(final.grads[name]) == pytest.approx(fd, rel=1e-5, abs=1e-9), name
    # the learning rate beside them is the same as without loss hyperparameters
    alone, _ = _mlp_run(kind, wd, s, names=())
    torch.testing.assert_close(final.grads["lr"], alone[-1].grads["lr"], rtol=1e-10, atol=1e-12)


def test_a_truncated_loss_hyperparameter_differentiates_the_last_steps_only():
    wd, s, eps = 0.02, 0.4, 1e-6
    results, _ = _mlp_run("momentum", wd, s, carry=0.0)
    last = results[-1]
    # the derivative of the final validation loss for a shift of wd on the last 8 steps alone:
    # re-run with the shifted value from step 16 on (same start of training)

    def run(delta: float) -> float:
        gen = torch.Generator().manual_seed(1)
        x, y = torch.randn(32, 3, generator=gen, dtype=DT), torch.randn(32, 1, generator=gen,
                                                                        dtype=DT)
        x_aug = x + 0.7 * torch.randn(32, 3, generator=gen, dtype=DT)
        xv, yv = torch.randn(24, 3, generator=gen, dtype=DT), torch.randn(24, 1, generator=gen,
                                                                          dtype=DT)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for k in range(24):
            decay = wd + (delta if k >= 16 else 0.0)
            opt.zero_grad()
            loss = (1 - s) * ((model(x) - y) ** 2).mean() + s * ((model(x_aug) - y) ** 2).mean() \
                + 0.5 * decay * sum((p ** 2).sum() for p in model.parameters())
            loss.backward()
            opt.step()
        return float(((model(xv) - yv) ** 2).mean().detach())

    fd = (run(eps) - run(-eps)) / (2 * eps)
    assert float(last.grads["wd"]) == pytest.approx(fd, rel=1e-5, abs=1e-9)
    whole, _ = _mlp_run("momentum", wd, s, carry=1.0)
    assert abs(float(whole[-1].grads["wd"]) - fd) > 0.05 * abs(fd)   # the whole run differs


def test_loss_hyperparameters_are_checked():
    model = nn.Linear(3, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hp = Hyperparameters.from_config({"lr": 0.1, "wd": 0.01, "strength": 0.5}, LOSS_SPACE,
                                     dtype=DT)
    with pytest.raises(ValueError, match="no hyperparameter \\['nope'\\]"):
        UnrolledEngine(model, opt, hp, loss_hparams=["nope"])
    with pytest.raises(ValueError, match="both an optimizer setting and a loss"):
        UnrolledEngine(model, opt, hp, {"lr": "lr"}, loss_hparams=["lr"])
    with pytest.raises(ValueError, match="list of names"):
        UnrolledEngine(model, opt, hp, loss_hparams="wd")
    only = UnrolledEngine(model, opt, hp, settings={}, loss_hparams=["wd"])  # no setting needed
    assert only.settings == {} and only.loss_hparams == ["wd"]
    with pytest.raises(TypeError, match="pass the loss as a function"):
        only.step(model(torch.ones(2, 3, dtype=DT)).sum())
