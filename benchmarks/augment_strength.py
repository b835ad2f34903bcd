"""Can a whole-run hypergradient switch augmentation off? The strength of augmentation on the
8x8 digits task where augmentation hurts.

``digits_augment``'s setting (20 labelled images per class, the project's CNN, SGD lr 0.05 with
momentum 0.9, 200 steps of batch 64) with ``ChoicePolicy`` at its start (TrivialAugment's
uniform choice, ceilings 0.5) mixed in at a strength s: every step's training loss is
(1 - s) CE(clean batch) + s CE(augmented batch), the augmented batch a function of (seed, step)
only, so the run is a deterministic function of s. For s on a grid, the script reports the
whole-run derivative d val_loss / d s (``UnrolledEngine(loss_hparams=["s"], carry=1)``, exact
for the run as executed), the validation loss (the digits validation split) and the held-out
accuracy (the test split and the unlabelled training images); then per seed the derivative at
0.5 beside the central difference over +-0.05 and the least-squares slope of the validation
loss over the grid (what a step of the searcher's size sees).

    python benchmarks/augment_strength.py [--seeds 0 1 2 3]
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch
from torch import nn

from autometa.augment.choice import ChoicePolicy
from autometa.data.digits import load_digits_splits
from autometa.hypergrad import Hyperparameters
from autometa.hypergrad.forward import UnrolledEngine
from autometa.space import space_from_dict
from autometa.trainables.digits import build_cnn
from autometa.trainables.digits_augment import low_data_indices

SPACE = space_from_dict({"parameters": {"s": {"type": "uniform", "low": 0.0, "high": 1.0,
                                              "differentiable": True}}})
GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def run(seed: int, s: float, tangent: bool = True, steps: int = 200, batch: int = 64):
    """(d val/d s or None, validation loss, held-out accuracy) after training at strength s."""
    data = load_digits_splits(seed=0)
    keep = low_data_indices(data.y_train, 20, seed)
    x = torch.as_tensor(data.x_train[keep]).reshape(-1, 1, 8, 8).float()
    y = torch.as_tensor(data.y_train[keep])
    xv, yv = torch.as_tensor(data.x_val).float(), torch.as_tensor(data.y_val)
    unused = np.setdiff1d(np.arange(len(data.y_train)), keep)
    xh = torch.cat([torch.as_tensor(data.x_test), torch.as_tensor(data.x_train[unused])]).float()
    yh = torch.cat([torch.as_tensor(data.y_test), torch.as_tensor(data.y_train[unused])])
    torch.manual_seed(seed)
    model = build_cnn({})
    net = nn.Sequential(nn.Flatten(), model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    policy = ChoicePolicy(seed=seed, ceiling=0.5)
    hp = Hyperparameters.from_config({"s": s}, SPACE)
    engine = UnrolledEngine(model, opt, hp, settings={}, loss_hparams=["s"], carry=1.0) \
        if tangent else None
    per_epoch = -(-len(y) // batch)
    ce = nn.functional.cross_entropy
    for index in range(steps):
        epoch, i = divmod(index, per_epoch)
        order = torch.as_tensor(np.random.default_rng([seed, epoch]).permutation(len(y)))
        rows = order[i * batch:(i + 1) * batch]
        policy.generator.manual_seed(seed * 1_000_003 + index)
        with torch.no_grad():
            augmented = policy(x[rows])

        def loss(h, rows=rows, augmented=augmented):
            return (1 - h["s"]) * ce(net(x[rows]), y[rows]) + h["s"] * ce(net(augmented), y[rows])

        if engine is not None:
            engine.step(loss)
        else:
            opt.zero_grad()
            loss({"s": torch.tensor(s)}).backward()
            opt.step()
    model.eval()
    derivative = float(engine.hypergradients(lambda h: ce(net(xv), yv)).grads["s"]) \
        if engine is not None else None
    with torch.no_grad():
        return derivative, float(ce(net(xv), yv)), float((net(xh).argmax(1) == yh).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}\n")
    print("| seed | " + " | ".join(f"s={s}: dval/ds, val, held-out acc" for s in GRID) + " |")
    print("|---|" + "---|" * len(GRID))
    summary = []
    for seed in args.seeds:
        rows = [run(seed, s) for s in GRID]
        print(f"| {seed} | " + " | ".join(f"{d:+.3f}, {v:.4f}, {a:.4f}" for d, v, a in rows)
              + " |", flush=True)
        eps = 0.05
        secant = (run(seed, 0.5 + eps, False)[1] - run(seed, 0.5 - eps, False)[1]) / (2 * eps)
        slope = float(np.polyfit(GRID, [v for _, v, _ in rows], 1)[0])
        summary.append((seed, rows[2][0], secant, slope, rows[-1][2] - rows[0][2]))
    print("\n| seed | dval/ds at 0.5 | central difference +-0.05 | least-squares slope over "
          "[0, 1] | held-out acc, s=1 minus s=0 |")
    print("|---|---|---|---|---|")
    for seed, d, secant, slope, gap in summary:
        print(f"| {seed} | {d:+.3f} | {secant:+.3f} | {slope:+.4f} | {gap:+.4f} |")


if __name__ == "__main__":
    main()
