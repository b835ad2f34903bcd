"""Quality of hypergradient descent on digits: 64 per-pixel L2 penalties, per method.

Multinomial logistic regression on scikit-learn's digits (standardized with the training
split's statistics; permutation seed 0; 300 train / 500 validation / 997 test), one L2
penalty per input pixel (its 10 weights), log-parametrized, starting at lambda = e^-4.
Each outer step trains to convergence (L-BFGS, float64), takes the implicit hypergradient
of the validation cross-entropy with one method, and moves log lambda with Adam.
Reference: one shared penalty tuned on an 11-point grid (log lambda = -8..2).

    python benchmarks/hypergrad_digits.py [--steps 15] [--lr 0.5]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from autometa.data.digits import load_digits_standardized
from autometa.hypergrad import hypergradient

DT = torch.float64


def data():
    d = load_digits_standardized()
    as_t = lambda a: torch.tensor(a, dtype=DT)  # noqa: E731
    return (as_t(d.x_train), torch.tensor(d.y_train), as_t(d.x_val), torch.tensor(d.y_val),
            as_t(d.x_test), torch.tensor(d.y_test))


def losses(xt, yt, xv, yv):
    def ce(x, y, p):
        return torch.nn.functional.cross_entropy(x @ p["W"] + p["b"], y)

    def train(p, h):
        return ce(xt, yt, p) + 0.5 * (torch.exp(h["log_lam"])[:, None] * p["W"] ** 2).sum()

    def val(p, h):
        return ce(xv, yv, p)

    return ce, train, val


def fit(train, h, init):
    p = {k: v.clone().requires_grad_() for k, v in init.items()}
    opt = torch.optim.LBFGS(list(p.values()), lr=1, max_iter=1000, tolerance_grad=1e-10,
                            tolerance_change=1e-14, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = train(p, h)
        loss.backward()
        return loss

    opt.step(closure)
    return {k: v.detach() for k, v in p.items()}


def accuracy(x, y, p):
    return float(((x @ p["W"] + p["b"]).argmax(1) == y).double().mean())


def run(method, options, steps, lr, d):
    xt, yt, xv, yv, xs, ys = d
    ce, train, val = losses(xt, yt, xv, yv)
    log_lam = torch.full((64,), -4.0, dtype=DT, requires_grad=True)
    outer = torch.optim.Adam([log_lam], lr=lr)
    p = {"W": torch.zeros(64, 10, dtype=DT), "b": torch.zeros(10, dtype=DT)}
    rows, spent = [], 0.0
    for step in range(steps + 1):
        h = {"log_lam": log_lam.detach()}
        p = fit(train, h, p)
        rows.append((step, float(ce(xv, yv, p)), float(ce(xs, ys, p)), accuracy(xs, ys, p), spent))
        if step == steps:
            break
        start = time.perf_counter()
        g = hypergradient(train, val, p, h, method=method, check=False, **options)["log_lam"]
        spent += time.perf_counter() - start
        outer.zero_grad()
        log_lam.grad = g
        outer.step()
    return rows


def grid(d):
    xt, yt, xv, yv, xs, ys = d
    ce, train, _ = losses(xt, yt, xv, yv)
    best = None
    for log_lam in range(-8, 3):
        p = fit(train, {"log_lam": torch.full((64,), float(log_lam), dtype=DT)},
                {"W": torch.zeros(64, 10, dtype=DT), "b": torch.zeros(10, dtype=DT)})
        row = (log_lam, float(ce(xv, yv, p)), float(ce(xs, ys, p)), accuracy(xs, ys, p))
        if best is None or row[1] < best[1]:
            best = row
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    d = data()
    print(f"# {platform.node()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, "
          f"Adam lr {args.lr} on log lambda, start e^-4")
    g = grid(d)
    print(f"\nShared penalty, 11-point grid: best log lambda {g[0]}: val CE {g[1]:.4f}, "
          f"test CE {g[2]:.4f}, test acc {g[3]:.4f}\n")
    methods = {"exact": {}, "cg": {"maxiter": 100, "tol": 1e-10},
               "neumann": {"alpha": "auto", "terms": 50},
               "fixed_point": {"alpha": "auto", "maxiter": 500, "tol": 1e-6}}
    results = {m: run(m, o, args.steps, args.lr, d) for m, o in methods.items()}
    print("| step | " + " | ".join(f"{m} val CE | {m} test CE" for m in methods) + " |")
    print("|---" * (1 + 2 * len(methods)) + "|")
    for i in range(args.steps + 1):
        cells = []
        for m in methods:
            row = results[m][i]
            cells += [f"{row[1]:.4f}", f"{row[2]:.4f}"]
        print(f"| {i} | " + " | ".join(cells) + " |")
    print("\n| method | best val CE (step) | test CE there | test acc there | lowest test CE (step) |"
          " hypergradient time, all steps (s) |")
    print("|---|---|---|---|---|---|")
    for m, rows in results.items():
        best = min(rows, key=lambda r: r[1])
        low = min(rows, key=lambda r: r[2])
        print(f"| {m} | {best[1]:.4f} ({best[0]}) | {best[2]:.4f} | {best[3]:.4f} | "
              f"{low[2]:.4f} ({low[0]}) | {rows[-1][4]:.2f} |")


if __name__ == "__main__":
    main()
