"""Hypergradient engine: solvers, implicit and unrolled differentiation against oracles (float64)."""

from __future__ import annotations

import warnings

import pytest
import torch

from autometa.hypergrad import (
    SOLVERS,
    UnconvergedWarning,
    hypergradient,
    largest_eigenvalue,
    make_solver,
    solve_cg,
    solve_exact,
    solve_fixed_point,
    solve_neumann,
    unrolled,
)
from autometa.testing import engines

DT = torch.float64


def spd(n: int = 8, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=gen, dtype=DT)
    return m @ m.T / n + torch.eye(n, dtype=DT)


# ---------------------------------------------------------------- solvers on their own
@pytest.mark.parametrize("solver,options", [
    (solve_exact, {}), (solve_cg, {"maxiter": 50, "tol": 1e-14}),
    (solve_fixed_point, {"maxiter": 5000, "tol": 1e-13}),
])
def test_solvers_solve_spd_systems(solver, options):
    a = spd()
    b = torch.arange(1.0, 9.0, dtype=DT)
    alpha = {"alpha": 1.0 / float(torch.linalg.eigvalsh(a).max())} if solver is solve_fixed_point else {}
    x = solver(lambda v: a @ v, b, **options, **alpha)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-11)


def test_neumann_terms_and_convergence():
    a = spd()
    b = torch.ones(8, dtype=DT)
    alpha = 1.0 / float(torch.linalg.eigvalsh(a).max())
    # K = 0: alpha * b; K = 1: alpha * (b + (I - alpha A) b)
    torch.testing.assert_close(solve_neumann(lambda v: a @ v, b, alpha=alpha, terms=0), alpha * b)
    one = alpha * (b + (b - alpha * a @ b))
    torch.testing.assert_close(solve_neumann(lambda v: a @ v, b, alpha=alpha, terms=1), one)
    exact = torch.linalg.solve(a, b)
    errors = [float(torch.linalg.vector_norm(solve_neumann(lambda v: a @ v, b, alpha=alpha,
                                                           terms=k) - exact)) for k in (5, 50, 500)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-8


def test_cg_counts_products_and_honours_init():
    a = spd()
    b = torch.ones(8, dtype=DT)
    calls = []
    solve_cg(lambda v: calls.append(1) or a @ v, b, maxiter=3, tol=0.0)
    assert len(calls) == 3
    exact = torch.linalg.solve(a, b)
    calls.clear()
    x = solve_cg(lambda v: calls.append(1) or a @ v, b, init=exact, tol=1e-12)
    torch.testing.assert_close(x, exact)
    assert len(calls) == 1  # only the initial residual


def test_largest_eigenvalue_and_auto_alpha():
    a = spd()
    top = float(torch.linalg.eigvalsh(a).max())
    assert largest_eigenvalue(lambda v: a @ v, torch.zeros(8, dtype=DT), iterations=200) == \
        pytest.approx(top, rel=1e-6)
    p = engines.ridge_problem()
    got = engines.ridge_hypergradient("neumann", p, alpha="auto", terms=300)
    torch.testing.assert_close(got, p["closed_form"], rtol=1e-6, atol=1e-9)


def test_make_solver_rejects_unknowns():
    with pytest.raises(ValueError, match="unknown method 'lbfgs'"):
        make_solver("lbfgs")
    with pytest.raises(ValueError, match="unknown option 'terms' for method 'cg'"):
        make_solver("cg", terms=3)


# ------------------------------------------------------------------- implicit
@pytest.mark.parametrize("method,options,rtol", [
    ("exact", {}, 1e-6), ("cg", {"maxiter": 100, "tol": 1e-12}, 1e-6),
    ("fixed_point", {"maxiter": 20000, "tol": 1e-12, "alpha": "auto"}, 1e-6),
])
def test_ridge_closed_form(method, options, rtol):
    if options.get("alpha") == "auto":
        options = {**options, "alpha": 1.0 / float(torch.linalg.eigvalsh(
            engines.ridge_problem()["A"]).max())}
    engines.check_ridge_closed_form(method, rtol=rtol, **options)


def test_neumann_converges_to_ridge_closed_form():
    p = engines.ridge_problem()
    alpha = 1.0 / float(torch.linalg.eigvalsh(p["A"]).max())
    errors = []
    for terms in (1, 3, 6, 200):
        got = engines.ridge_hypergradient("neumann", p, alpha=alpha, terms=terms)
        errors.append(float(torch.linalg.vector_norm(got - p["closed_form"]) /
                            torch.linalg.vector_norm(p["closed_form"])))
    assert errors[0] > errors[1] > errors[2] > errors[3], errors
    assert errors[0] > 1e-3 and errors[-1] < 1e-6


@pytest.mark.parametrize("method", ["exact", "cg"])
def test_logistic_regression_ift_and_finite_differences(method):
    engines.check_logistic(method, rtol=1e-6)


def test_direct_dependence_of_val_loss_is_included():
    p = engines.ridge_problem()
    train, val = engines.ridge_losses(p)

    def val_plus(params, hparams):
        return val(params, hparams) + (hparams["lam"] ** 2).sum()

    got = hypergradient(train, val_plus, {"w": p["w"]}, {"lam": p["lam"]}, method="exact")
    torch.testing.assert_close(got["lam"], p["closed_form"] + 2 * p["lam"])


def test_damping_solves_the_damped_system():
    p = engines.ridge_problem()
    train, val = engines.ridge_losses(p)
    got = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, method="cg", damping=0.5,
                        check=False, tol=1e-14)
    g_val = p["xv"].T @ (p["xv"] @ p["w"] - p["yv"])
    damped = -p["w"] * torch.linalg.solve(p["A"] + 0.5 * torch.eye(len(p["w"]), dtype=DT), g_val)
    torch.testing.assert_close(got["lam"], damped)


def test_inputs_are_not_modified_and_shapes_kept():
    p = engines.ridge_problem()
    train, val = engines.ridge_losses(p)
    w, lam = p["w"].clone(), p["lam"].clone()
    out = hypergradient(train, val, {"w": w}, {"lam": lam, "unused": torch.zeros(2, 3, dtype=DT)})
    assert torch.equal(w, p["w"]) and torch.equal(lam, p["lam"]) and not w.requires_grad
    assert out["unused"].shape == (2, 3) and torch.all(out["unused"] == 0)


def test_unconverged_inner_solve_is_reported():
    p = engines.ridge_problem()
    train, val = engines.ridge_losses(p)
    with pytest.warns(UnconvergedWarning, match="not at an optimum of the training loss"):
        hypergradient(train, val, {"w": p["w"] + 1.0}, {"lam": p["lam"]}, method="cg")
    with pytest.warns(UnconvergedWarning, match="cg solve did not converge"):
        _, info = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, method="cg",
                                maxiter=1, return_info=True)
    assert not info.converged and info.relative_residual > info.tol
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, method="cg",
                                return_info=True)
    assert info.converged and info.inner_grad_norm < 1e-8


def test_every_registered_method_runs():
    assert set(SOLVERS) == {"exact", "cg", "minres", "neumann", "fixed_point"}


# ------------------------------------------------------------------- unrolled
def _quadratic_task():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(30, 4, generator=gen, dtype=DT)
    y = torch.randn(30, generator=gen, dtype=DT)
    xv = torch.randn(30, 4, generator=gen, dtype=DT)
    yv = torch.randn(30, generator=gen, dtype=DT)

    def train(params, h):
        w = params["w"]
        return 0.5 * ((x @ w - y) ** 2).mean() + 0.5 * (torch.exp(h["log_lam"]) * w ** 2).sum()

    def val(params, h):
        return 0.5 * ((xv @ params["w"] - yv) ** 2).mean()

    return train, val, {"w": torch.zeros(4, dtype=DT)}


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_unrolled_matches_finite_differences(optimizer):
    train, val, w0 = _quadratic_task()
    hparams = {"log_lam": torch.tensor([-1.0, 0.0, 0.5, -2.0], dtype=DT),
               "lr": torch.tensor(0.05 if optimizer == "adam" else 0.3, dtype=DT),
               "mu": torch.tensor(0.8, dtype=DT)}
    kwargs = {"steps": 15, "optimizer": optimizer, "lr": "lr", "momentum": "mu"}
    got, _ = unrolled(train, val, w0, hparams, **kwargs)

    def objective(h):
        _, w = unrolled(train, val, w0, h, **kwargs)
        return float(val(w, h))

    h = 1e-6
    for name in ("log_lam", "lr") + (("mu",) if optimizer == "momentum" else ()):
        flat = hparams[name].reshape(-1)
        for i in range(flat.numel()):
            up = {k: v.clone() for k, v in hparams.items()}
            down = {k: v.clone() for k, v in hparams.items()}
            up[name].reshape(-1)[i] += h
            down[name].reshape(-1)[i] -= h
            fd = (objective(up) - objective(down)) / (2 * h)
            assert got[name].reshape(-1)[i].item() == pytest.approx(fd, rel=1e-6, abs=1e-9), \
                (name, i)


def test_truncated_unrolling_equals_unrolling_the_tail():
    train, val, w0 = _quadratic_task()
    hparams = {"log_lam": torch.zeros(4, dtype=DT)}
    full, w_full = unrolled(train, val, w0, hparams, steps=10, lr=0.2)
    same, _ = unrolled(train, val, w0, hparams, steps=10, lr=0.2, truncate=10)
    torch.testing.assert_close(full["log_lam"], same["log_lam"])
    _, w_mid = unrolled(train, val, w0, hparams, steps=7, lr=0.2)
    tail, w_tail = unrolled(train, val, w_mid, hparams, steps=3, lr=0.2)
    truncated, w_trunc = unrolled(train, val, w0, hparams, steps=10, lr=0.2, truncate=3)
    torch.testing.assert_close(truncated["log_lam"], tail["log_lam"])
    torch.testing.assert_close(w_trunc["w"], w_full["w"])


def test_implicit_matches_unrolled_at_convergence():
    p = engines.ridge_problem()
    train, val = engines.ridge_losses(p)
    lipschitz = float(torch.linalg.eigvalsh(p["A"]).max())
    w0 = {"w": torch.zeros_like(p["w"])}
    via_unrolled, w_end = unrolled(train, val, w0, {"lam": p["lam"]}, steps=3000,
                                   lr=1.0 / lipschitz)
    torch.testing.assert_close(w_end["w"], p["w"], rtol=1e-8, atol=1e-10)
    via_implicit = hypergradient(train, val, w_end, {"lam": p["lam"]}, method="exact")
    torch.testing.assert_close(via_unrolled["lam"], via_implicit["lam"], rtol=1e-6, atol=1e-9)
