"""Accuracy against cost of the implicit hypergradient's linear solvers, on three models.

For each model, the weights are trained as a user would, then the hypergradient of the
validation loss with respect to the weight decay(s) is computed with MINRES (the default,
``method="auto"``), CG and Neumann (alpha from the top eigenvalue) for a range of
Hessian-vector product budgets, and compared with a reference (a dense solve where the model
is small enough, otherwise MINRES run to a residual of 1e-10). Costs are in training steps:
one step is a forward and backward pass of the training loss on the same batch, timed here.

Models:
  mlp     32-unit tanh MLP, breast cancer (300 train / 269 validation), weight decay 0.01,
          Adam for 2000 full-batch steps (float64)
  logreg  64 per-pixel penalties, logistic regression on digits (300/500), L-BFGS to
          convergence (float64): the task of the hypergradient searcher's benchmark
  cnn     the digits CNN of autometa.trainables.digits, 16 channels, weight decay 1e-3 on
          every weight, SGD with momentum for 20 epochs on 1,000 images (float32)

    python benchmarks/hypergrad_accuracy.py            # all three, about 3 minutes on 2 cores
    python benchmarks/hypergrad_accuracy.py --fd cnn   # and a retrained finite difference

``minres+auto`` is the engine's default (``damping="auto"``): undamped MINRES, then the
smallest damping that meets the tolerance where that missed it (the damping is printed).
``--fd`` adds the reference a user cannot argue with: the validation loss after L-BFGS
retrains the weights at the decay(s) scaled by exp(+-0.05), as a central difference along
that scaling, against each result's lam . dL/dlam.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
import warnings

import numpy as np
import torch
from torch import nn

from autometa.hypergrad import implicit_hypergradient
from autometa.hypergrad.solvers import largest_eigenvalue

BUDGETS = (5, 10, 20, 50, 100, 200, 300)


def mlp_problem():
    from sklearn.datasets import load_breast_cancer

    dt = torch.float64
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x = (x - x[:300].mean(0)) / x[:300].std(0)
    xt, yt = torch.tensor(x[:300], dtype=dt), torch.tensor(y[:300])
    xv, yv = torch.tensor(x[300:], dtype=dt), torch.tensor(y[300:])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 32), nn.Tanh(), nn.Linear(32, 2)).to(dt)
    lam = torch.tensor(0.01, dtype=dt)

    def train(lam):
        decay = sum((p ** 2).sum() for n, p in model.named_parameters() if "weight" in n)
        return nn.functional.cross_entropy(model(xt), yt) + 0.5 * lam * decay

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2000):
        opt.zero_grad()
        train(lam).backward()
        opt.step()
    return model, train, lambda lam: nn.functional.cross_entropy(model(xv), yv), lam, True


def logreg_problem():
    from autometa.data.digits import load_digits_standardized

    dt = torch.float64
    data = load_digits_standardized()
    xt, yt = torch.tensor(data.x_train, dtype=dt), torch.tensor(data.y_train)
    xv, yv = torch.tensor(data.x_val, dtype=dt), torch.tensor(data.y_val)
    model = nn.Linear(64, 10).to(dt)
    lam = torch.full((64,), math.exp(-4), dtype=dt)

    def train(lam):
        return nn.functional.cross_entropy(model(xt), yt) + 0.5 * (lam * (model.weight ** 2).sum(0)).sum()

    lbfgs(list(model.parameters()), lambda: train(lam), max_iter=500, tolerance_change=1e-14,
          history_size=20)
    return model, train, lambda lam: nn.functional.cross_entropy(model(xv), yv), lam, True


def cnn_problem():
    from autometa.data.digits import load_digits_splits
    from autometa.trainables.digits import build_cnn

    data = load_digits_splits(seed=0)
    xt = torch.as_tensor(data.x_train[:1000])
    yt = torch.as_tensor(data.y_train[:1000])
    xv, yv = torch.as_tensor(data.x_val), torch.as_tensor(data.y_val)
    torch.manual_seed(0)
    model = build_cnn({"hidden": 16})
    lam = torch.tensor(1e-3)

    def train(lam, idx=None):
        x, y = (xt, yt) if idx is None else (xt[idx], yt[idx])
        decay = sum((p ** 2).sum() for n, p in model.named_parameters() if "weight" in n)
        return nn.functional.cross_entropy(model(x), y) + 0.5 * lam * decay

    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(20):
        model.train()
        for idx in np.array_split(rng.permutation(1000), 16):
            opt.zero_grad()
            train(lam, torch.as_tensor(idx)).backward()
            opt.step()
    model.eval()  # BatchNorm: the hypergradient is taken with the running statistics
    return model, train, lambda lam: nn.functional.cross_entropy(model(xv), yv), lam, False


def solve(model, train, val, lam, method, **options):
    weights = [p for p in model.parameters()]
    theta = lam.detach().clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return implicit_hypergradient(train(theta), val(theta), weights, [theta], method=method,
                                      **options)


def step_seconds(model, train, lam, repeats=20) -> float:
    """Seconds of one training step (forward + backward of the training loss)."""
    weights = list(model.parameters())
    start = time.perf_counter()
    for _ in range(repeats):
        torch.autograd.grad(train(lam), weights)
    return (time.perf_counter() - start) / repeats


def lbfgs(weights, loss, *, max_iter: int, tolerance_change: float, history_size: int) -> None:
    """Minimize ``loss()`` over ``weights`` with L-BFGS (strong Wolfe line search)."""
    opt = torch.optim.LBFGS(weights, max_iter=max_iter, tolerance_grad=1e-10,
                            tolerance_change=tolerance_change, history_size=history_size,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss()
        value.backward()
        return value
    opt.step(closure)


def retrained_fd(model, train, val, lam, h=0.05) -> float:
    """d/ds L_val(w*(lam e^s)) at s = 0, w* retrained from the current weights by L-BFGS."""
    state = copy.deepcopy(model.state_dict())
    weights = [p for p in model.parameters()]

    def at(scale: float) -> float:
        model.load_state_dict(state)
        shifted = lam * scale
        lbfgs(weights, lambda: train(shifted), max_iter=3000, tolerance_change=1e-15,
              history_size=50)
        with torch.no_grad():
            return float(val(shifted))

    fd = (at(math.exp(h)) - at(math.exp(-h))) / (2 * h)
    model.load_state_dict(state)
    return fd


def run(name: str, fd: bool = False) -> None:
    model, train, val, lam, dense = {"mlp": mlp_problem, "logreg": logreg_problem,
                                     "cnn": cnn_problem}[name]()
    n = sum(p.numel() for p in model.parameters())
    exact = solve(model, train, val, lam, "exact" if dense else "minres", tol=1e-10,
                  **({} if dense else {"maxiter": 3000}))
    reference = exact.grads[0]
    step = step_seconds(model, train, lam)
    weights = list(model.parameters())
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        train(lam), weights, create_graph=True)])
    top = largest_eigenvalue(lambda v: torch.cat([h.reshape(-1) for h in torch.autograd.grad(
        grad, weights, grad_outputs=v, retain_graph=True)]).detach(), grad.detach())
    print(f"\n{name}: {n} weights, one training step {1e3 * step:.2f} ms, "
          f"lambda_max {top:.3g}, reference {'dense solve' if dense else 'MINRES, 3000 HVPs'} "
          f"(residual {exact.info.relative_residual:.2g}, inner gap / |hypergradient| "
          f"{exact.info.inner_gap / exact.info.hypergrad_norm:.2g})")
    difference = retrained_fd(model, train, val, lam) if fd else None
    if difference is not None:
        print(f"retrained central difference along lam: {difference:.5g} (the reference's "
              f"lam . dL/dlam: {float((lam * reference).sum()):.5g})")
    print(f"{'method':12} {'HVPs':>5} {'rel. error':>11} {'residual':>10} {'converged':>9} "
          f"{'damping':>8} {'cost (steps)':>12}" + ("  error vs FD" if fd else ""))
    for method in ("minres", "minres+auto", "cg", "neumann"):
        for k in BUDGETS:
            options = {"terms": k, "alpha": 1.0 / top} if method == "neumann" else {"maxiter": k}
            if method == "minres+auto":
                options["damping"] = "auto"
            start = time.perf_counter()
            result = solve(model, train, val, lam, method.split("+")[0], **options)
            cost = (time.perf_counter() - start) / step
            error = float(torch.linalg.vector_norm(result.grads[0] - reference) /
                          torch.linalg.vector_norm(reference))
            line = (f"{method:12} {k:5d} {error:11.3g} {result.info.relative_residual:10.3g} "
                    f"{str(result.info.converged):>9} {result.info.damping:8.2g} {cost:12.1f}")
            if difference is not None:
                along = float((lam * result.grads[0]).sum())
                line += f"  {abs(along - difference) / abs(difference):11.3g}"
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["mlp", "logreg", "cnn"])
    parser.add_argument("--fd", action="store_true",
                        help="also a retrained central difference as the reference")
    args = parser.parse_args()
    torch.set_num_threads(2)
    for name in args.models:
        run(name, args.fd)


if __name__ == "__main__":
    main()
