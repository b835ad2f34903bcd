"""Hypergradients that are right or say so: MINRES, the checks, their advice, NaN, unrolled (float64)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from autometa.hypergrad import (
    SOLVERS,
    UnconvergedWarning,
    hypergradient,
    solve_minres,
    spectrum_bounds,
    unrolled,
)
from autometa.hypergrad.implicit import AUTO_DAMPING_CAP, auto_damping
from autometa.testing import engines

DT = torch.float64


def matrix(kind: str, n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=gen, dtype=DT)
    b = torch.randn(n, generator=gen, dtype=DT)
    if kind == "spd":
        return m @ m.T / n + 0.1 * torch.eye(n, dtype=DT), b
    if kind == "indefinite":
        return m @ m.T / n - 0.9 * torch.eye(n, dtype=DT), b
    q, _ = torch.linalg.qr(m)               # singular, b in its range (consistent)
    eig = torch.linspace(0.0, 2.0, n, dtype=DT)
    eig[:3] = 0.0
    a = q @ torch.diag(eig) @ q.T
    return a, a @ b


@pytest.mark.parametrize("kind", ["spd", "indefinite", "singular"])
def test_minres_solves_symmetric_systems_definite_or_not(kind):
    a, b = matrix(kind)
    calls = []
    x = solve_minres(lambda v: calls.append(1) or a @ v, b, maxiter=200, tol=1e-12)
    assert float(torch.linalg.vector_norm(a @ x - b) / torch.linalg.vector_norm(b)) < 1e-11
    assert len(calls) <= 60  # n = 40 plus round-off, far below maxiter
    if kind != "singular":
        torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-10)


def test_minres_residual_decreases_with_products_and_warm_start_saves_them():
    a, b = matrix("indefinite")
    exact = torch.linalg.solve(a, b)
    residuals = [float(torch.linalg.vector_norm(a @ solve_minres(lambda v: a @ v, b, maxiter=k,
                                                                 tol=0.0) - b)) for k in (5, 10, 20)]
    assert residuals[0] > residuals[1] > residuals[2]  # MINRES: monotone in the residual
    calls = []
    x = solve_minres(lambda v: calls.append(1) or a @ v, b, init=exact + 1e-9, tol=1e-6)
    assert len(calls) <= 2 and float(torch.linalg.vector_norm(x - exact)) < 1e-6
    cold = []
    solve_minres(lambda v: cold.append(1) or a @ v, b, tol=1e-6)
    assert len(cold) > 10 * len(calls)


def test_cg_breaks_down_where_minres_does_not():
    a, b = matrix("indefinite")
    cg = SOLVERS["cg"](lambda v: a @ v, b, maxiter=200, tol=1e-12)
    assert float(torch.linalg.vector_norm(a @ cg - b) / torch.linalg.vector_norm(b)) > 1e-3


def test_spectrum_bounds_estimate_the_extreme_eigenvalues():
    gen = torch.Generator().manual_seed(2)
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=gen, dtype=DT))
    eig = torch.linspace(-1.0, 3.0, 40, dtype=DT)
    a, b = q @ torch.diag(eig) @ q.T, torch.randn(40, generator=gen, dtype=DT)
    low, high = spectrum_bounds(lambda v: a @ v, b, iterations=40)
    assert low == pytest.approx(float(eig[0]), rel=1e-6)
    assert high == pytest.approx(float(eig[-1]), rel=1e-6)
    low, high = spectrum_bounds(lambda v: a @ v, b, iterations=10)  # Ritz values lie inside
    assert float(eig[0]) - 1e-9 <= low < 0 and high <= float(eig[-1]) + 1e-9


# ------------------------------------------------------ converged means the tolerance was met
@pytest.mark.parametrize("method", sorted(SOLVERS) + ["auto"])
def test_converged_means_the_stated_tolerance_was_met_for_every_method(method):
    p = engines.ridge_problem()
    train, val = engines.ridge_losses(p)
    options = {"alpha": "auto"} if method in ("neumann", "fixed_point") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grads, info = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, method=method,
                                    return_info=True, **options)
    assert info.converged == (info.relative_residual <= info.tol)  # w is the exact optimum
    if info.converged:  # then the answer is as good as the tolerance says (condition ~ 10)
        error = float(torch.linalg.vector_norm(grads["lam"] - p["closed_form"]) /
                      torch.linalg.vector_norm(p["closed_form"]))
        assert error < 100 * info.tol, (method, error)
    assert method not in ("auto", "minres", "cg", "exact") or info.converged
    if method in ("neumann", "fixed_point"):  # too short a series cannot reach tol: said so
        budget = {"terms": 2} if method == "neumann" else {"maxiter": 2}
        with pytest.warns(UnconvergedWarning, match="did not converge"):
            _, short = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, method=method,
                                     return_info=True, alpha="auto", **budget)
        assert not short.converged and short.relative_residual > short.tol


def test_a_nan_validation_gradient_is_reported_as_not_finite():
    p = engines.ridge_problem()
    train, _ = engines.ridge_losses(p)

    def val(params, hparams):
        return (params["w"] * torch.tensor(math.nan, dtype=DT)).sum()

    with pytest.warns(UnconvergedWarning, match="validation loss"):
        grads, info = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]},
                                    return_info=True)
    assert not info.converged and not info.finite
    assert torch.isnan(grads["lam"]).all()
    assert not info.relative_residual == 0.0  # not measured, never a fake 0


def test_an_infinite_training_loss_is_reported():
    p = engines.ridge_problem()
    _, val = engines.ridge_losses(p)

    def train(params, hparams):
        return (params["w"] ** 2).sum() / torch.tensor(0.0, dtype=DT) + hparams["lam"].sum()

    with pytest.warns(UnconvergedWarning, match="training loss"):
        _, info = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, return_info=True)
    assert not info.converged and not info.finite


def test_the_inner_gap_flags_weights_short_of_the_optimum():
    p = engines.ridge_problem()
    train, val = engines.ridge_losses(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, exact = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, return_info=True)
    assert exact.converged and exact.inner_gap < 1e-10
    # weights moved off the optimum: the first-order change of val_loss the check predicts
    # equals the real change after finishing training (a quadratic: exactly)
    off = p["w"] + 0.05 * torch.ones_like(p["w"])
    with pytest.warns(UnconvergedWarning, match="not at an optimum of the training loss"):
        _, info = hypergradient(train, val, {"w": off}, {"lam": p["lam"]}, return_info=True)
    assert not info.converged
    w = off.clone().requires_grad_()
    (g,) = torch.autograd.grad(val({"w": w}, {}), [w])
    newton_change = float(g @ (p["w"] - off))          # val's gradient . Newton step, exact here
    assert info.inner_gap == pytest.approx(abs(newton_change), rel=1e-6)


def test_advice_that_is_followed_makes_the_solve_converge():
    p = engines.ridge_problem()
    train, val = engines.ridge_losses(p)
    with pytest.warns(UnconvergedWarning) as record:
        _, info = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, method="cg",
                                maxiter=2, return_info=True)
    assert not info.converged and "raise maxiter to about" in info.message
    assert str(record[0].message) == info.message
    suggested = int(info.message.split("raise maxiter to about ")[1].split(",")[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, fixed = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, method="cg",
                                 maxiter=suggested, return_info=True)
    assert fixed.converged


def test_an_indefinite_hessian_is_named_with_the_damping_that_fixes_cg():
    gen = torch.Generator().manual_seed(1)
    a, _ = matrix("indefinite")
    b = torch.randn(40, generator=gen, dtype=DT)

    def train(params, hparams):   # 0.5 w'Aw - lam * sum(w): a saddle at w = A^-1 lam 1
        w = params["w"]
        return 0.5 * w @ a @ w - hparams["lam"] * w.sum()

    def val(params, hparams):
        return 0.5 * ((params["w"] - b) ** 2).sum()

    lam = torch.tensor(1.0, dtype=DT)
    w = torch.linalg.solve(a, torch.ones(40, dtype=DT))
    with pytest.warns(UnconvergedWarning, match="indefinite"):
        _, info = hypergradient(train, val, {"w": w}, {"lam": lam}, method="cg", maxiter=200,
                                return_info=True)
    damping = float(info.message.split("raise damping to about ")[1].split(" ")[0])
    assert damping >= -float(torch.linalg.eigvalsh(a)[0])  # enough to make H + damping I > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, damped = hypergradient(train, val, {"w": w}, {"lam": lam}, method="cg", maxiter=200,
                                  damping=damping, return_info=True)
    assert damped.relative_residual <= damped.tol
    # MINRES (the default) needs no damping: the saddle's hypergradient is exact
    grads, minres = hypergradient(train, val, {"w": w}, {"lam": lam}, return_info=True)
    closed = (w - b) @ torch.linalg.solve(a, torch.ones(40, dtype=DT))  # dL/dlam = g' A^-1 1
    assert minres.relative_residual <= minres.tol
    assert float(grads["lam"]) == pytest.approx(float(closed), rel=1e-4)


@pytest.mark.parametrize("low, high", [(1e-8, 1.0), (-0.3, 2.0), (1e-3, 1e3)])
def test_auto_damping_is_the_smallest_that_lets_the_solve_meet_tol(low, high):
    maxiter, tol = 40, 1e-4
    d = auto_damping(low, high, maxiter, tol)
    kappa = (high + d) / (low + d)
    assert low + d > 0  # positive definite once damped
    # half of maxiter products suffice at that damping: sqrt(kappa)/2 ln(2/tol) = maxiter/2
    assert 0.5 * math.sqrt(kappa) * math.log(2 / tol) == pytest.approx(maxiter / 2, rel=1e-9)
    assert auto_damping(0.5, 1.0, maxiter, tol) == 0.0  # well conditioned: none
    assert math.isnan(auto_damping(math.nan, 1.0, maxiter, tol))


def _ill_conditioned_quadratic(n: int = 400):
    """L_train = 0.5 w'Aw - lam * c'w (eigenvalues 1e-9 .. 1, the stiff directions weakly
    curved as in a roughly trained network), L_val = 0.5 |w - b|^2, at the exact optimum."""
    gen = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DT))
    a = q @ torch.diag(torch.logspace(-9, 0, n, dtype=DT)) @ q.T
    c, b = torch.randn(n, generator=gen, dtype=DT), torch.randn(n, generator=gen, dtype=DT)
    lam = torch.tensor(0.7, dtype=DT)
    w = torch.linalg.solve(a, lam * c)

    def train(params, hparams):
        return 0.5 * params["w"] @ a @ params["w"] - hparams["lam"] * (c @ params["w"])

    def val(params, hparams):
        return 0.5 * ((params["w"] - b) ** 2).sum()
    return a, b, c, lam, w, train, val


def test_auto_damping_converges_where_the_undamped_solve_cannot_and_is_the_proximal_exact():
    a, b, c, lam, w, train, val = _ill_conditioned_quadratic()
    with pytest.warns(UnconvergedWarning, match="did not converge"):
        _, plain = hypergradient(train, val, {"w": w}, {"lam": lam}, maxiter=250,
                                 return_info=True)
    assert not plain.converged and plain.damping == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: nothing to say
        grads, auto = hypergradient(train, val, {"w": w}, {"lam": lam}, maxiter=250,
                                    damping="auto", return_info=True)
    d = auto.damping
    assert auto.converged and auto.relative_residual <= auto.tol
    # no more than the damping the true extreme eigenvalues call for (the Lanczos estimates
    # lie inside the spectrum, so they ask for less), or ten times it on the second try, and
    # a small share of the largest curvature (1)
    assert 0 < d <= 10 * auto_damping(1e-9, 1.0, 250, auto.tol) * (1 + 1e-9)
    assert d <= AUTO_DAMPING_CAP
    # the closed form of the damped system: dL/dlam = (w - b)' (A + dI)^-1 c
    eye = torch.eye(len(w), dtype=DT)
    damped = float((w - b) @ torch.linalg.solve(a + d * eye, c))
    assert float(grads["lam"]) == pytest.approx(damped, rel=1e-3)
    # ... which is the exact hypergradient of the proximal inner problem
    # min_w L_train + d/2 |w - w*|^2 (w* the weights it was taken at): central difference of
    # L_val at that problem's optimum for lam +- h, in closed form
    def val_at(lam_value):
        w_prox = torch.linalg.solve(a + d * eye, lam_value * c + d * w)
        return float(0.5 * ((w_prox - b) ** 2).sum())
    h = 1e-4
    fd = (val_at(float(lam) + h) - val_at(float(lam) - h)) / (2 * h)
    assert float(grads["lam"]) == pytest.approx(fd, rel=1e-3)


def test_auto_damping_refuses_a_damping_that_would_swamp_the_hessian():
    """With 10 products the solve would need damping above the largest curvature (the
    result would be the damping's, not the Hessian's): it stays unconverged and says so."""
    a, b, c, lam, w, train, val = _ill_conditioned_quadratic()
    with pytest.warns(UnconvergedWarning, match="did not converge"):
        _, info = hypergradient(train, val, {"w": w}, {"lam": lam}, maxiter=10,
                                damping="auto", return_info=True)
    assert not info.converged and info.damping == 0.0
    assert info.relative_residual > info.tol and "raise maxiter" in info.message


def test_the_engine_reuses_its_spectrum_estimate_and_converged_keeps_its_meaning(monkeypatch):
    """The 20-product spectrum estimate (for the automatic damping and the advice) is taken
    once per ``spectrum_every`` calls; a damping from a reused estimate is checked like any
    other, so a wrong estimate can cost convergence but never makes "converged" untrue."""
    from torch import nn

    import autometa.hypergrad.implicit as implicit
    from autometa.hypergrad.model import Hyperparameters, ImplicitEngine
    from autometa.space import space_from_dict

    estimates = []
    real = implicit.spectrum_bounds
    monkeypatch.setattr(implicit, "spectrum_bounds",
                        lambda *a, **k: estimates.append(1) or real(*a, **k))
    a, b, c, lam, w, _, _ = _ill_conditioned_quadratic()
    space = space_from_dict({"parameters": {"lam": {"type": "uniform", "low": 0.1, "high": 2.0,
                                                    "differentiable": True}}})

    def engine(every):
        model = nn.Module()
        model.w = nn.Parameter(w.clone())
        hp = Hyperparameters.from_config({"lam": float(lam)}, space, dtype=DT)
        return ImplicitEngine(model, hp, maxiter=250, spectrum_every=every, warm_start=False), (
            lambda h: 0.5 * model.w @ a @ model.w - h["lam"] * (c @ model.w),
            lambda h: 0.5 * ((model.w - b) ** 2).sum())

    reusing, losses = engine(3)
    results = [reusing.hypergradients(*losses) for _ in range(4)]
    assert len(estimates) == 2  # calls 1 and 4 (each call's undamped solve misses tol)
    fresh, fresh_losses = engine(1)
    first = fresh.hypergradients(*fresh_losses)
    fresh.hypergradients(*fresh_losses)
    assert len(estimates) == 4  # every call
    for r in results:  # the same weights: the reused estimate is the fresh one
        assert r.info.converged and r.info.relative_residual <= r.info.tol
        assert r.info.damping == first.info.damping > 0
        assert torch.equal(r.grads["lam"], first.grads["lam"])
    again, again_losses = engine(3)
    again.load_state_dict(reusing.state_dict())
    assert (again.spectrum, again.spectrum_age) == (reusing.spectrum, reusing.spectrum_age)
    # a wrong estimate (well conditioned: no damping needed) is used, and the result says
    # it did not converge
    again.spectrum, again.spectrum_age = (0.5, 1.0), 1
    with pytest.warns(UnconvergedWarning):
        wrong = again.hypergradients(*again_losses)
    assert len(estimates) == 4 and wrong.info.damping == 0.0
    assert not wrong.info.converged and wrong.info.relative_residual > wrong.info.tol
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="spectrum_every"):
            ImplicitEngine(nn.Linear(1, 1), again.hparams, spectrum_every=bad)


def test_auto_damping_adds_nothing_where_the_plain_solve_converges():
    p = engines.ridge_problem()
    train, val = engines.ridge_losses(p)
    plain, plain_info = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]},
                                      return_info=True)
    auto, auto_info = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]},
                                    damping="auto", return_info=True)
    assert auto_info.damping == 0.0 and auto_info.converged
    assert torch.equal(auto["lam"], plain["lam"])
    # Neumann's series has no residual to aim at: "auto" damps nothing there
    _, neumann = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, method="neumann",
                               damping="auto", alpha="auto", terms=400, return_info=True)
    assert neumann.damping == 0.0
    for bad in (-1.0, float("nan"), "lots", True):
        with pytest.raises(ValueError, match="damping must be a number >= 0 or 'auto'"):
            hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, damping=bad)


# ------------------------------------------------------------------------- unrolled
def test_unrolled_reports_finite_results_and_a_diverged_unroll():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=gen, dtype=DT), torch.randn(20, generator=gen, dtype=DT)

    def train(params, h):
        return 0.5 * ((x @ params["w"] - y) ** 2).mean() + 0.5 * h["lam"] * (params["w"] ** 2).sum()

    def val(params, h):
        return 0.5 * ((x @ params["w"] - y) ** 2).mean()

    w0 = {"w": torch.zeros(3, dtype=DT)}
    lam = {"lam": torch.tensor(0.1, dtype=DT)}
    _, _, info = unrolled(train, val, w0, lam, steps=20, lr=0.1, return_info=True)
    assert info.converged and info.finite and info.method == "unrolled" and not info.message
    _, _, truncated = unrolled(train, val, w0, lam, steps=20, lr=0.1, truncate=5, return_info=True)
    assert truncated.converged and "biased" in truncated.message
    grads, _, diverged = unrolled(train, val, w0, lam, steps=400, lr=50.0, return_info=True)
    assert not diverged.converged and not diverged.finite and "diverged" in diverged.message


def test_an_unchecked_hypergradient_is_not_called_converged():
    p = engines.ridge_problem()
    train, val = engines.ridge_losses(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # and nothing is said
        grads, info = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, check=False,
                                    return_info=True)
    assert not info.converged and math.isnan(info.relative_residual) and "not checked" in info.message
    torch.testing.assert_close(grads["lam"], p["closed_form"], rtol=1e-3, atol=1e-8)
