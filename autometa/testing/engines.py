"""The hypergradient-engine conformance suite: oracles every method must match.

* ridge regression with one penalty per feature, against the closed form
  ``dL_val/dlambda = -w* (A^-1 g_val)``, ``A = X'X + diag(lambda)``;
* L2-regularized logistic regression at a Newton-solved optimum, against the explicit
  implicit-function-theorem formula and central finite differences.

All in float64. Each check takes a method name and solver options.
"""

from __future__ import annotations

import torch

from autometa.hypergrad import hypergradient

DT = torch.float64


def ridge_problem(n: int = 40, d: int = 6, seed: int = 0) -> dict:
    """A small, well-conditioned ridge problem with its closed-form hypergradient."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=DT)
    w_true = torch.randn(d, generator=gen, dtype=DT)
    y = x @ w_true + 0.3 * torch.randn(n, generator=gen, dtype=DT)
    xv = torch.randn(n, d, generator=gen, dtype=DT)
    yv = xv @ w_true + 0.3 * torch.randn(n, generator=gen, dtype=DT)
    lam = torch.exp(torch.linspace(-1.0, 1.5, d, dtype=DT))
    a = x.T @ x + torch.diag(lam)
    w = torch.linalg.solve(a, x.T @ y)
    g_val = xv.T @ (xv @ w - yv)
    closed_form = -w * torch.linalg.solve(a, g_val)     # dL_val/dlambda = -w* (A^-1 g_val)
    return {"x": x, "y": y, "xv": xv, "yv": yv, "lam": lam, "w": w, "A": a,
            "closed_form": closed_form}


def ridge_losses(p: dict):
    def train(params, hparams):
        w = params["w"]
        return 0.5 * ((p["x"] @ w - p["y"]) ** 2).sum() + 0.5 * (hparams["lam"] * w ** 2).sum()

    def val(params, hparams):
        return 0.5 * ((p["xv"] @ params["w"] - p["yv"]) ** 2).sum()

    return train, val


def ridge_hypergradient(method: str, problem: dict | None = None, **options) -> torch.Tensor:
    p = problem or ridge_problem()
    train, val = ridge_losses(p)
    out = hypergradient(train, val, {"w": p["w"]}, {"lam": p["lam"]}, method=method,
                        check=False, **options)
    return out["lam"]


def check_ridge_closed_form(method: str, rtol: float = 1e-6, **options) -> float:
    """The hypergradient matches the ridge closed form; returns the relative error."""
    p = ridge_problem()
    got = ridge_hypergradient(method, p, **options)
    err = float(torch.linalg.vector_norm(got - p["closed_form"]) /
                torch.linalg.vector_norm(p["closed_form"]))
    assert err <= rtol, f"{method}: relative error {err:.3g} > {rtol:g}"
    return err


def logistic_problem(n: int = 60, d: int = 4, seed: int = 1) -> dict:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=DT)
    w_true = torch.randn(d, generator=gen, dtype=DT)
    y = (torch.sigmoid(x @ w_true) > torch.rand(n, generator=gen, dtype=DT)).to(DT)
    xv = torch.randn(n, d, generator=gen, dtype=DT)
    yv = (torch.sigmoid(xv @ w_true) > torch.rand(n, generator=gen, dtype=DT)).to(DT)
    return {"x": x, "y": y, "xv": xv, "yv": yv,
            "log_lam": torch.linspace(-2.0, 0.5, d, dtype=DT)}


def logistic_losses(p: dict):
    def nll(x, y, w):
        z = x @ w
        return (torch.nn.functional.softplus(z) - y * z).mean()

    def train(params, hparams):
        w = params["w"]
        return nll(p["x"], p["y"], w) + 0.5 * (torch.exp(hparams["log_lam"]) * w ** 2).sum()

    def val(params, hparams):
        return nll(p["xv"], p["yv"], params["w"])

    return train, val


def newton_solve(p: dict, log_lam: torch.Tensor, iterations: int = 50) -> torch.Tensor:
    """The inner optimum by Newton's method (to machine precision)."""
    x, y, n = p["x"], p["y"], p["x"].shape[0]
    lam = torch.exp(log_lam)
    w = torch.zeros(x.shape[1], dtype=DT)
    for _ in range(iterations):
        s = torch.sigmoid(x @ w)
        grad = x.T @ (s - y) / n + lam * w
        hess = x.T @ (x * (s * (1 - s))[:, None]) / n + torch.diag(lam)
        w = w - torch.linalg.solve(hess, grad)
    return w


def logistic_ift(p: dict) -> torch.Tensor:
    """dL_val/dlog_lam = -(lam * w*) (H^-1 g_val), the explicit IFT formula."""
    w = newton_solve(p, p["log_lam"])
    lam, x, n = torch.exp(p["log_lam"]), p["x"], p["x"].shape[0]
    s = torch.sigmoid(x @ w)
    hess = x.T @ (x * (s * (1 - s))[:, None]) / n + torch.diag(lam)
    g_val = p["xv"].T @ (torch.sigmoid(p["xv"] @ w) - p["yv"]) / p["xv"].shape[0]
    return -(lam * w) * torch.linalg.solve(hess, g_val)


def logistic_finite_differences(p: dict, h: float = 1e-5) -> torch.Tensor:
    _, val = logistic_losses(p)
    out = torch.zeros_like(p["log_lam"])
    for i in range(len(out)):
        e = torch.zeros_like(out)
        e[i] = h
        up = val({"w": newton_solve(p, p["log_lam"] + e)}, {})
        down = val({"w": newton_solve(p, p["log_lam"] - e)}, {})
        out[i] = (up - down) / (2 * h)
    return out


def check_logistic(method: str, rtol: float = 1e-6, **options) -> None:
    """At a Newton-solved optimum the hypergradient matches the IFT formula and finite differences."""
    p = logistic_problem()
    train, val = logistic_losses(p)
    w = newton_solve(p, p["log_lam"])
    got = hypergradient(train, val, {"w": w}, {"log_lam": p["log_lam"]}, method=method,
                        **options)["log_lam"]
    for name, ref, tol in (("IFT formula", logistic_ift(p), rtol),
                           ("finite differences", logistic_finite_differences(p), max(rtol, 1e-6))):
        err = float(torch.linalg.vector_norm(got - ref) / torch.linalg.vector_norm(ref))
        assert err <= tol, f"{method} vs {name}: relative error {err:.3g} > {tol:g}"
