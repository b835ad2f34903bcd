"""A learned choice policy against fixed policies where augmentation helps (issue 18).

The task (issue 18's): scikit-learn's digits upscaled to ``--size`` pixels (16: bilinear, then
uint8; 8: the originals), 20 labelled images per class, a two-conv CNN trained by full-batch
Adam (lr 1e-2) for ``--epochs`` epochs, accuracy on the other ~1,600 images. Per seed (the
labelled subset, the weights, the draws), arms trained on all 200 labelled images:

* ``none``: no augmentation;
* ``randaugment``: torchvision's RandAugment(2, 9); ``trivialaugment``: TrivialAugmentWide;
* ``start``: the choice policy at its start (TrivialAugment's uniform choice over autometa's
  operations and identity, magnitudes uniform below 0.5), not learned (the control);
* ``learned``: the choice policy learned by :class:`autometa.augment.PolicyLearner` while a
  network trains on 15 images per class (a hyperstep every ``--every`` epochs against the other
  5 per class), then a fresh network trained on all 200 with the learned policy;
* ``weights-only`` / ``ceilings-only`` / ``no-control-variate``: the ablation (one part
  learned, the other at its start; both, with plain REINFORCE for the weights);
* ``gated``: ``search_spaces/augment_or_not.yaml``'s rule: the learned arm's search, and a
  network without augmentation on the same 15 per class; the lower validation loss on the other
  5 decides whether the final network on all 200 is trained with the learned policy or with
  none;
* ``tpe-randaugment``: hyperopt's TPE (what Tune's HyperOptSearch runs) over RandAugment's
  (N in 1..3, M in 0..30), ``--tpe-trials`` trainings on the 15 per class scored on the other
  5, then the best (N, M) trained on all 200.

The learned arm's hypersteps are timed against its training steps (the cost of one hyperstep
in training steps). ``--search-epochs N`` stops the search's network after N epochs (its
policy is all the search keeps), the cheaper search of the cost target.

Printed: a markdown table (mean +- std over seeds, the paired difference learned minus each arm
with a 95% t interval, wall time over the ``none`` arm's), and how the learned policy moved
(mean change of each operation's weight over seeds and in how many seeds it had that sign).

    python benchmarks/augment_lowdata.py [--seeds 0 1 2 3 4] [--size 16] [--epochs 150]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from intervals import interval  # (benchmarks/intervals.py)
from sklearn.datasets import load_digits
from torch import nn
from torchvision.transforms import v2

from autometa.augment import ChoicePolicy, PolicyLearner

TIMES = {"step": [], "hyperstep": []}


def load(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    if size != 8:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
    return (x * 255).round().to(torch.uint8), torch.tensor(digits.target)


def split(labels: np.ndarray, seed: int, per_class: int = 20, train: int = 15):
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for c in range(10):
        picked = rng.permutation(np.flatnonzero(labels == c))[:per_class]
        fit += list(picked[:train])
        val += list(picked[train:])
    rest = np.setdiff1d(np.arange(len(labels)), fit + val)
    return np.array(fit), np.array(val), rest


def network(size: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * (size // 4) ** 2, 10))


def per_image_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets, reduction="none")


def train(x8: torch.Tensor, y: torch.Tensor, seed: int, epochs: int, transform=None,
          policy: ChoicePolicy | None = None, learn: dict | None = None) -> nn.Module:
    torch.manual_seed(seed)
    model = network(x8.shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = x8.float() / 255
    learner = None
    if learn is not None:
        learner = PolicyLearner(policy, model, per_image_loss, lr=1e-2,
                                outer_lr=learn["outer_lr"], draws=learn["draws"],
                                learn=learn["parts"],
                                control_variate=learn["control_variate"])
    for epoch in range(epochs):
        tick = time.perf_counter()
        model.train()
        if transform is not None:
            batch = torch.stack([transform(image) for image in x8]).float() / 255
        elif policy is not None:
            batch = policy(x)
        else:
            batch = x
        optimizer.zero_grad()
        F.cross_entropy(model(batch), y).backward()
        optimizer.step()
        tock = time.perf_counter()
        if learner is not None:
            TIMES["step"].append(tock - tick)
        if learner is not None and epoch % learn["every"] == 0:
            learner.step((x, y), learn["val"])
            TIMES["hyperstep"].append(time.perf_counter() - tock)
    return model


def accuracy(model: nn.Module, x8: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x8.float() / 255).argmax(1) == y).float().mean())


def run_arm(arm: str, x8, y, seed: int, args) -> tuple[float, float, ChoicePolicy | None]:
    fit, val, rest = split(y.numpy(), seed)
    labelled = np.concatenate([fit, val])
    start = time.perf_counter()
    learned = None
    if arm == "none":
        model = train(x8[labelled], y[labelled], seed, args.epochs)
    elif arm == "randaugment":
        model = train(x8[labelled], y[labelled], seed, args.epochs, transform=v2.RandAugment(2, 9))
    elif arm == "trivialaugment":
        model = train(x8[labelled], y[labelled], seed, args.epochs,
                      transform=v2.TrivialAugmentWide())
    elif arm == "tpe-randaugment":
        model = train(x8[labelled], y[labelled], seed, args.epochs,
                      transform=v2.RandAugment(*tpe_randaugment(x8, y, fit, val, seed, args)))
    elif arm == "start":
        model = train(x8[labelled], y[labelled], seed, args.epochs,
                      policy=ChoicePolicy(ceiling=args.ceiling, seed=seed))
    elif arm == "gated":  # search_spaces/augment_or_not.yaml's rule, on this task
        learned = learn_policy(x8, y, fit, val, seed, args, ("weights", "ceilings"), True)
        searched = LAST_SEARCH["model"]
        plain = train(x8[fit], y[fit], seed, args.epochs)
        if val_loss(plain, x8[val], y[val]) < val_loss(searched, x8[val], y[val]):
            GATE.append("none")
            model = train(x8[labelled], y[labelled], seed, args.epochs)
        else:
            GATE.append("learned")
            model = train(x8[labelled], y[labelled], seed, args.epochs,
                          policy=final_policy(learned, seed))
    else:
        both = ("weights", "ceilings")
        parts = {"learned": both, "weights-only": ("weights",), "ceilings-only": ("ceilings",),
                 "no-control-variate": both}[arm]
        learned = learn_policy(x8, y, fit, val, seed, args, parts, arm != "no-control-variate")
        model = train(x8[labelled], y[labelled], seed, args.epochs,
                      policy=final_policy(learned, seed))
    return accuracy(model, x8[rest], y[rest]), time.perf_counter() - start, learned


LAST_SEARCH: dict[str, nn.Module] = {}
GATE: list[str] = []  # what the gated arm chose, per seed


def learn_policy(x8, y, fit, val, seed: int, args, parts, control_variate: bool) -> ChoicePolicy:
    """The choice policy learned while a network trains on ``fit`` against ``val`` (that
    network is kept in ``LAST_SEARCH["model"]``)."""
    learned = ChoicePolicy(ceiling=args.ceiling, seed=seed)
    val_batch = (x8[val].float() / 255, y[val])
    LAST_SEARCH["model"] = train(
        x8[fit], y[fit], seed, args.search_epochs or args.epochs, policy=learned,
        learn={"outer_lr": args.outer_lr, "draws": args.draws, "every": args.every,
               "val": val_batch, "parts": parts, "control_variate": control_variate})
    return learned


def final_policy(learned: ChoicePolicy, seed: int) -> ChoicePolicy:
    """The learned distribution, with draws of its own, for the final training."""
    final = ChoicePolicy(learned.operations, seed=seed + 1000)
    final.load_values(learned.probabilities().detach(), learned.ceilings().detach())
    return final


def val_loss(model: nn.Module, x8: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(x8.float() / 255), y))


def tpe_randaugment(x8, y, fit, val, seed: int, args) -> tuple[int, int]:
    """RandAugment's (N, M) picked by TPE on the validation images (``--tpe-trials``)."""
    import hyperopt

    def loss(point: dict) -> float:
        model = train(x8[fit], y[fit], seed, args.epochs,
                      transform=v2.RandAugment(int(point["n"]), int(point["m"])))
        return 1 - accuracy(model, x8[val], y[val])

    space = {"n": hyperopt.hp.quniform("n", 1, 3, 1), "m": hyperopt.hp.quniform("m", 0, 30, 1)}
    best = hyperopt.fmin(loss, space, algo=hyperopt.tpe.suggest, max_evals=args.tpe_trials,
                         rstate=np.random.default_rng(seed), show_progressbar=False)
    return int(best["n"]), int(best["m"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--search-epochs", type=int, default=None,
                        help="epochs of the policy search's network (default: --epochs); the "
                             "final training always runs --epochs")
    parser.add_argument("--draws", type=int, default=1)
    parser.add_argument("--outer-lr", type=float, default=0.05)
    parser.add_argument("--ceiling", type=float, default=0.5)
    parser.add_argument("--tpe-trials", type=int, default=8)
    parser.add_argument("--arms", nargs="+", default=["none", "randaugment", "trivialaugment",
                                                      "tpe-randaugment", "start", "learned",
                                                      "weights-only", "ceilings-only",
                                                      "no-control-variate", "gated"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    x8, y = load(args.size)
    train(x8[:20], y[:20], 0, 5)  # untimed warm-up, so the first timed arm pays no start-up
    acc = {arm: [] for arm in args.arms}
    cost = {arm: [] for arm in args.arms}
    moves = []
    names = None
    for seed in args.seeds:
        for arm in args.arms:
            a, seconds, learned = run_arm(arm, x8, y, seed, args)
            acc[arm].append(a)
            cost[arm].append(seconds)
            if arm == "learned":
                names = learned.names
                start = ChoicePolicy(learned.operations, ceiling=args.ceiling)
                moves.append((learned.probabilities() - start.probabilities()).detach().numpy())
                print(f"seed {seed} learned: " + ", ".join(
                    f"{n} {p:.2f}" for n, p in zip(names, learned.probabilities().tolist(),
                                                   strict=True)), flush=True)
            print(f"seed {seed} {arm}: {a:.4f} ({seconds:.1f} s)", flush=True)
    base = np.mean(cost["none"]) if "none" in cost else np.nan
    print(f"\n{args.size}x{args.size} digits, {len(args.seeds)} seeds, {args.epochs} epochs, "
          f"hyperstep every {args.every}, draws {args.draws}, outer lr {args.outer_lr}, "
          f"search {args.search_epochs or args.epochs} epochs; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}\n")
    print("| arm | accuracy | learned minus this (95% t interval) | wall time (x none) |")
    print("|---|---|---|---|")
    for arm in args.arms:
        a = np.array(acc[arm])
        diff = interval(np.array(acc["learned"]) - a) if "learned" in acc and arm != "learned" \
            else ""
        print(f"| {arm} | {a.mean():.4f} +- {a.std(ddof=1) if len(a) > 1 else 0:.4f} | {diff} | "
              f"{np.mean(cost[arm]) / base:.1f} |")
    if GATE:
        print(f"\nThe gated arm chose: {', '.join(GATE)}.")
    if TIMES["hyperstep"]:
        print(f"\nOne hyperstep costs {np.mean(TIMES['hyperstep']) / np.mean(TIMES['step']):.2f} "
              f"training steps (the augmented full-batch step it follows; "
              f"{len(TIMES['hyperstep'])} hypersteps timed).")
    if moves:
        m = np.array(moves)
        print("\nLearned weight minus start, mean over seeds (seeds with that sign):")
        print(", ".join(f"{n} {d:+.3f} ({int((np.sign(m[:, i]) == np.sign(d)).sum())}/{len(m)})"
                        for i, (n, d) in enumerate(zip(names, m.mean(0), strict=True))))


if __name__ == "__main__":
    main()
