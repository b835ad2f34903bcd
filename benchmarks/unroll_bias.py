"""Which hypergradient predicts retraining on an SGD-trained CNN: unrolled, truncated, implicit.

A BatchNorm-free digits CNN (conv 8 - conv 16 - pool - linear, ReLU, 1,000 training images,
16 minibatches an epoch, SGD with momentum) is trained from a fixed start with a fixed batch
order, in float64, so that the training run is a deterministic function of the weight decay
lambda. Against that function's central differences at several scales eps (the validation
loss after retraining at lambda * exp(+-eps)), the script compares lambda * dL_val/dlambda from:

  unrolled, all T steps   the exact derivative of the training run as executed
  unrolled, last K steps  truncated backpropagation (earlier steps without a graph)
  implicit (MINRES)       at the final weights, full-batch training loss (the IFT)

and against the smoothed response: the least-squares slope of the retrained validation loss
over ``--points`` values of log lambda spread evenly across +-width (with the slope's standard
error from the fit's residuals), which is what a step of the size a searcher takes sees.

    python benchmarks/unroll_bias.py [--epochs 20] [--lr 0.05] [--momentum 0.9]
"""

from __future__ import annotations

import argparse
import math
import platform
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from autometa.data.digits import load_digits_splits
from autometa.hypergrad import implicit_hypergradient
from autometa.hypergrad.unrolled import unrolled

DT = torch.float64
CE = nn.functional.cross_entropy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--decay", type=float, default=1e-3)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.05, 0.01, 3e-3, 1e-3, 1e-4])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.2, 0.05])
    parser.add_argument("--points", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(2)
    d = load_digits_splits(seed=0)
    xt = torch.as_tensor(d.x_train[:1000], dtype=DT).reshape(-1, 1, 8, 8)
    yt = torch.as_tensor(d.y_train[:1000])
    xv = torch.as_tensor(d.x_val, dtype=DT).reshape(-1, 1, 8, 8)
    yv = torch.as_tensor(d.y_val)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(64, 10)).to(DT)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    rng = np.random.default_rng(0)
    batches = [torch.as_tensor(b) for _ in range(args.epochs)
               for b in np.array_split(rng.permutation(1000), 16)]
    steps = len(batches)

    def train_loss(w, x, y, lam):
        # L_train = CE + lam/2 * sum of squared conv and linear weights
        decay = sum((p ** 2).sum() for n, p in w.items() if n.endswith("weight"))
        return CE(functional_call(model, w, (x,)), y) + 0.5 * lam * decay

    def val_loss(w, _h=None):
        return CE(functional_call(model, w, (xv,)), yv)

    def train(lam):  # PyTorch's SGD with momentum: b = mu b + g, w = w - lr b
        w = {n: t.clone().requires_grad_() for n, t in start.items()}
        buf = None
        for idx in batches:
            g = torch.autograd.grad(train_loss(w, xt[idx], yt[idx], lam), list(w.values()))
            buf = list(g) if buf is None else [args.momentum * b + gi for b, gi in zip(buf, g, strict=True)]
            w = {n: (t - args.lr * b).detach().requires_grad_()
                 for (n, t), b in zip(w.items(), buf, strict=True)}
        return {n: t.detach() for n, t in w.items()}

    lam0 = args.decay
    final = train(torch.tensor(lam0, dtype=DT))
    w = {n: t.clone().requires_grad_() for n, t in final.items()}
    grad = torch.autograd.grad(train_loss(w, xt, yt, lam0), list(w.values()))
    print(f"# {platform.node()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}; "
          f"{steps} SGD steps (lr {args.lr}, momentum {args.momentum}), decay {lam0}; "
          f"validation CE {float(val_loss(final)):.4f}, full-batch |grad| "
          f"{math.sqrt(sum(float((g ** 2).sum()) for g in grad)):.3g}")
    print("\n| estimate | lambda dL_val/dlambda | seconds |\n|---|---|---|")
    for eps in args.eps:
        t0 = time.perf_counter()
        up = float(val_loss(train(torch.tensor(lam0 * math.exp(eps), dtype=DT))))
        down = float(val_loss(train(torch.tensor(lam0 * math.exp(-eps), dtype=DT))))
        print(f"| retrained, central difference eps {eps:g} | {(up - down) / (2 * eps):+.4g} | "
              f"{time.perf_counter() - t0:.1f} |", flush=True)

    for width in args.widths:
        t0 = time.perf_counter()
        u = np.linspace(-width, width, args.points)
        losses = np.array([float(val_loss(train(torch.tensor(lam0 * math.exp(v), dtype=DT))))
                           for v in u])
        slope, intercept = np.polyfit(u, losses, 1)
        resid = losses - (slope * u + intercept)
        se = math.sqrt(float(resid @ resid) / (len(u) - 2) / float(((u - u.mean()) ** 2).sum()))
        print(f"| retrained, least-squares slope over +-{width:g} ({args.points} points) | "
              f"{slope:+.4g} +- {se:.2g} | {time.perf_counter() - t0:.1f} |", flush=True)

    class Batches:  # the same minibatch order as train(), one per inner step
        def __init__(self):
            self.k = 0

        def __call__(self, w, h):
            idx = batches[self.k % steps]
            self.k += 1
            return train_loss(w, xt[idx], yt[idx], h["lam"])

    for keep in sorted({steps, steps // 4, 64, 16, 4}, reverse=True):
        t0 = time.perf_counter()
        g, _ = unrolled(Batches(), val_loss, start, {"lam": torch.tensor(lam0, dtype=DT)},
                        steps=steps, optimizer="momentum", lr=args.lr, momentum=args.momentum,
                        truncate=keep)
        label = "all" if keep == steps else f"last {keep}"
        print(f"| unrolled, {label} of {steps} steps | {lam0 * float(g['lam']):+.4g} | "
              f"{time.perf_counter() - t0:.1f} |", flush=True)
    for budget in (50, 300):
        t0 = time.perf_counter()
        theta = torch.tensor(lam0, dtype=DT, requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = implicit_hypergradient(train_loss(w, xt, yt, theta), val_loss(w), list(w.values()),
                                       [theta], method="minres", maxiter=budget)
        print(f"| implicit, MINRES {budget} products (converged: {r.info.converged}, residual "
              f"{r.info.relative_residual:.2g}) | {lam0 * float(r.grads[0]):+.4g} | "
              f"{time.perf_counter() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    main()
