"""Validation overfitting on the 64-penalty task: which trial to choose along a descent path.

Hypergradient descent on 64 per-pixel L2 penalties (the task of
``search_spaces/digits_64_penalties.yaml``: multinomial logistic regression on digits, 300 train /
500 validation / 997 test, L-BFGS to convergence, float64) fits the validation set as it goes.
This script walks one path per split (Adam, lr 0.5, on log lambda from -4, clipped to the box
[-8, 2], CG hypergradients solved to 1e-8: the exact descent the searcher approximates) and
asks which trial each selection rule picks and what its *test* cross-entropy is:

  best val      the lowest validation loss (autometa's rule, the metric Tune ranks by)
  1-SE          the earliest trial within one standard error of the best validation loss
                (Breiman's rule; standard error of the per-sample losses of the best trial)
  paired 1-SE   the same with the standard error of the per-sample differences to the best
  holdout 20 %  descent on 400 validation samples, the trial chosen by the other 100
  holdout 50 %  descent on 250, chosen by 250
  polyak 5      one more training at the mean log lambda of the last 5 trials
  oracle        the lowest test loss along the best-val path (not a rule: a bound for rules)

Splits: the issue's definition (``RandomState(0)`` permutation, pixels standardized with the
first 500 rows) and ``load_digits_standardized(seed=s)`` (``default_rng(s)``, standardized with
the 300 training rows; the trainable's ``split_seed``) for the seeds given.

    python benchmarks/overfit_rules.py [--seeds 0 1 2 3 4] [--steps 15]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from autometa.data.digits import load_digits_standardized
from autometa.hypergrad import hypergradient

DT = torch.float64
CE = torch.nn.functional.cross_entropy


def issue_split():
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.RandomState(0).permutation(len(data.target))
    x, y = data.data[order].astype(np.float64), data.target[order]
    std = x[:500].std(0)
    std[std == 0] = 1.0
    x = (x - x[:500].mean(0)) / std
    return x[:300], y[:300], x[300:800], y[300:800], x[800:], y[800:]


def seeded_split(seed):
    d = load_digits_standardized(seed=seed)
    return d.x_train, d.y_train, d.x_val, d.y_val, d.x_test, d.y_test


def fit(xt, yt, log_lam, init):
    p = {k: v.clone().requires_grad_() for k, v in init.items()}
    opt = torch.optim.LBFGS(list(p.values()), lr=1, max_iter=1000, tolerance_grad=1e-10,
                            tolerance_change=1e-14, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = train_loss(xt, yt)(p, {"log_lam": log_lam})
        loss.backward()
        return loss

    opt.step(closure)
    return {k: v.detach() for k, v in p.items()}


def train_loss(xt, yt):
    # L_train = CE(X W + b, y) + 1/2 sum_j exp(l_j) ||W_j||^2
    return lambda p, h: CE(xt @ p["W"] + p["b"], yt) + \
        0.5 * (torch.exp(h["log_lam"])[:, None] * p["W"] ** 2).sum()


def path(split, holdout_share, steps, lr):
    """Per trial: (per-sample losses on the descent set, on the held-out set, test CE, log lam)."""
    xt, yt, xv, yv, xs, ys = (torch.tensor(a, dtype=DT) if a.dtype.kind == "f" else torch.tensor(a)
                              for a in split)
    cut = len(yv) - int(round(holdout_share * len(yv)))
    xa, ya, xb, yb = xv[:cut], yv[:cut], xv[cut:], yv[cut:]
    log_lam = torch.full((64,), -4.0, dtype=DT, requires_grad=True)
    outer = torch.optim.Adam([log_lam], lr=lr)
    p = {"W": torch.zeros(64, 10, dtype=DT), "b": torch.zeros(10, dtype=DT)}
    rows = []
    for step in range(steps + 1):
        lam = log_lam.detach().clone()
        p = fit(xt, yt, lam, p)
        per = lambda x, y, p=p: CE(x @ p["W"] + p["b"], y, reduction="none")  # noqa: E731
        rows.append((per(xa, ya), per(xb, yb), float(CE(xs @ p["W"] + p["b"], ys)), lam))
        if step == steps:
            break
        g = hypergradient(train_loss(xt, yt), lambda q, h: CE(xa @ q["W"] + q["b"], ya), p,
                          {"log_lam": lam}, method="cg", maxiter=200, tol=1e-8,
                          check=False)["log_lam"]
        outer.zero_grad()
        log_lam.grad = g
        outer.step()
        with torch.no_grad():
            log_lam.clamp_(-8.0, 2.0)
    return rows, (xt, yt, xs, ys, p)


def rules(split, steps, lr):
    rows, (xt, yt, xs, ys, p) = path(split, 0.0, steps, lr)
    val = [float(r[0].mean()) for r in rows]
    test = [r[2] for r in rows]
    best = int(np.argmin(val))
    n = len(rows[best][0])
    se = float(rows[best][0].std()) / n ** 0.5
    one_se = next(i for i, v in enumerate(val) if v <= val[best] + se)
    paired = next(i for i, v in enumerate(val)
                  if v <= val[best] + float((rows[i][0] - rows[best][0]).std()) / n ** 0.5)
    mean_lam = torch.stack([r[3] for r in rows[-5:]]).mean(0)
    q = fit(xt, yt, mean_lam, p)
    out = {"best val": (test[best], best), "1-SE": (test[one_se], one_se),
           "paired 1-SE": (test[paired], paired)}
    for share in (0.2, 0.5):
        held, _ = path(split, share, steps, lr)
        pick = int(np.argmin([float(r[1].mean()) for r in held]))
        out[f"holdout {round(share * 100)} %"] = (held[pick][2], pick)
    out["polyak 5"] = (float(CE(xs @ q["W"] + q["b"], ys)), steps + 1)
    out["oracle"] = (min(test), int(np.argmin(test)))
    return out, val[best]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"# {platform.node()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, "
          f"{args.steps} steps, Adam lr {args.lr}")
    splits = {"issue's split": issue_split()}
    splits.update({f"split_seed {s}": seeded_split(s) for s in args.seeds})
    table = {}
    for name, split in splits.items():
        start = time.perf_counter()
        table[name], best_val = rules(split, args.steps, args.lr)
        print(f"# {name}: best validation CE {best_val:.4f} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    names = list(next(iter(table.values())))
    print("\n| split | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for split, out in table.items():
        print(f"| {split} | " + " | ".join(f"{out[r][0]:.4f} ({out[r][1]})" for r in names) + " |")
    base = np.array([out["best val"][0] for out in table.values()])
    print("| mean | " + " | ".join(f"{np.mean([o[r][0] for o in table.values()]):.4f}"
                                   for r in names) + " |")
    print("| better than best val on | " + " | ".join(
        f"{int(sum(o[r][0] < b - 1e-12 for o, b in zip(table.values(), base, strict=True)))} of {len(base)}"
        for r in names) + " |")


if __name__ == "__main__":
    main()
