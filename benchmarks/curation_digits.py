"""Mislabel detection and curation on digits with flipped labels (issue 6).

Data: ``load_digits_splits(seed=0)`` (1,079 train / 359 validation / 359 test); a share of the
training labels (10%, 20%, 40%) is flipped to another class uniformly at random. A small MLP
(64-64-10, ReLU, Adam 1e-2, 40 epochs of minibatches of 64, label smoothing ``--smoothing``) is
trained on the noisy labels; its penultimate activations (+ a bias column) are the features of
the dataset derivative. Every network of every arm uses the same recipe; the smoothing is the
one of ``--smoothing-grid`` with the best *validation* accuracy of clean training (printed first).

Detection (AUROC for the flipped samples):
  * dataset derivative: ``dLOO/dalpha`` of weighted ridge (ridge 1) on those features;
  * the derivative of the ridge model's loss on the clean validation split instead
    (``validation_derivative``, through the hypergradient engine: needs clean labelled data);
  * training loss of each sample under the trained network (the usual baseline);
  * Learning to Reweight: the share of epochs in which a sample got weight 0 while a second
    network trained with ``reweighted_step`` against 50 clean validation samples.

Test accuracy of the MLP retrained from scratch: on the noisy labels; without the samples the
derivative flags (the largest ``rate`` share: the flip rate is assumed known); without every
sample of positive derivative (no rate needed); curated in two passes (those removed, then
``relabel`` by a network retrained on the kept samples: keep, relabel above confidence 0.5, or
drop each suspect); with DIVA's reweighting (``reweight``, 20 projected steps in [0, 1]) as
sample weights; with the clean labels. Cost: seconds, and as a multiple of one training run.
Mean over ``--seeds``.

    python benchmarks/curation_digits.py [--seeds 0 1 2 3 4] [--rates 0.1 0.2 0.4]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from autometa.data.curation import dataset_derivative, relabel, reweight, suspects
from autometa.data.curation import validation_derivative as val_derivative
from autometa.data.digits import load_digits_splits
from autometa.hypergrad.reweight import reweighted_step
from autometa.launch.curate import flip_labels


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


SMOOTHING = 0.1


def train(x, y, seed, weights=None, epochs=40):
    torch.manual_seed(seed)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(seed)
    w = torch.ones(len(y)) if weights is None else weights
    for _ in range(epochs):
        order = torch.as_tensor(rng.permutation(len(y)))
        for i in range(0, len(y), 64):
            idx = order[i:i + 64]
            opt.zero_grad()
            losses = nn.functional.cross_entropy(model(x[idx]), y[idx], reduction="none",
                                                 label_smoothing=SMOOTHING)
            loss = (w[idx] * losses).sum() / w[idx].sum().clamp(min=1e-12)
            loss.backward()
            opt.step()
    return model


def l2rw_scores(x, y, xv, yv, seed, epochs=40):
    torch.manual_seed(seed)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(seed)
    zeroed = torch.zeros(len(y))

    def per_sample(out, target):
        return nn.functional.cross_entropy(out, target, reduction="none")

    for _ in range(epochs):
        order = torch.as_tensor(rng.permutation(len(y)))
        for i in range(0, len(y), 64):
            idx = order[i:i + 64]
            _, w = reweighted_step(model, opt, per_sample, (x[idx], y[idx]), (xv, yv))
            zeroed[idx] += (w == 0).float()
    return model, zeroed / epochs


@torch.no_grad()
def accuracy(model, x, y):
    return float((model(x).argmax(1) == y).float().mean())


def run(rate: float, seed: int) -> dict[str, float]:
    torch.set_num_threads(1)
    d = load_digits_splits(seed=0)
    x, xt = torch.as_tensor(d.x_train), torch.as_tensor(d.x_test)
    clean, yt = torch.as_tensor(d.y_train), torch.as_tensor(d.y_test)
    noisy_np, flipped = flip_labels(d.y_train, rate, seed)
    noisy = torch.as_tensor(noisy_np)
    xv, yv = torch.as_tensor(d.x_val[:50]), torch.as_tensor(d.y_val[:50])
    out: dict[str, float] = {}

    start = time.perf_counter()
    net = train(x, noisy, seed)
    out["t_train"] = time.perf_counter() - start
    out["acc_noisy"] = accuracy(net, xt, yt)
    with torch.no_grad():
        feats = net[:2](x).double()
        losses = nn.functional.cross_entropy(net(x), noisy, reduction="none")
    phi = torch.cat([feats, torch.ones(len(feats), 1, dtype=torch.float64)], dim=1)
    start = time.perf_counter()
    _, grad = dataset_derivative(phi, noisy, ridge=1.0)
    out["t_derivative"] = time.perf_counter() - start
    out["auroc_derivative"] = roc_auc_score(flipped, grad.numpy())
    out["auroc_loss"] = roc_auc_score(flipped, losses.numpy())
    with torch.no_grad():
        val_feats = net[:2](torch.as_tensor(d.x_val)).double()
    phi_val = torch.cat([val_feats, torch.ones(len(val_feats), 1, dtype=torch.float64)], dim=1)
    _, val_grad = val_derivative(phi, noisy, phi_val, torch.as_tensor(d.y_val), ridge=1.0)
    out["auroc_val_derivative"] = roc_auc_score(flipped, val_grad.numpy())
    start = time.perf_counter()
    _, zeroed = l2rw_scores(x, noisy, xv, yv, seed)
    out["t_l2rw"] = time.perf_counter() - start
    out["auroc_l2rw"] = roc_auc_score(flipped, zeroed.numpy())

    keep = ~suspects(grad, share=rate)
    out["acc_removed"] = accuracy(train(x[keep], noisy[keep], seed), xt, yt)
    flagged = suspects(grad, threshold=0.0)
    out["acc_positive"] = accuracy(train(x[~flagged], noisy[~flagged], seed), xt, yt)
    start = time.perf_counter()
    second = train(x[~flagged], noisy[~flagged], seed)
    with torch.no_grad():
        labels, use = relabel(noisy, flagged, second(x).softmax(dim=1), confidence=0.5)
    out["t_curated"] = time.perf_counter() - start + out["t_derivative"]
    out["wrong_curated"] = float((labels[use] != clean[use]).sum())
    out["kept_curated"] = float(use.sum())
    out["acc_curated"] = accuracy(train(x[use], labels[use], seed), xt, yt)
    start = time.perf_counter()
    weights, _ = reweight(phi, noisy, steps=20, ridge=1.0)
    out["t_reweight"] = time.perf_counter() - start
    out["acc_reweighted"] = accuracy(train(x, noisy, seed, weights=weights.float()), xt, yt)
    out["acc_clean"] = accuracy(train(x, clean, seed), xt, yt)
    return out


def clean_validation(smoothing: float, seeds: list[int]) -> float:
    """Validation accuracy of clean training with this smoothing (the recipe's selection)."""
    global SMOOTHING
    SMOOTHING = smoothing
    d = load_digits_splits(seed=0)
    x, y = torch.as_tensor(d.x_train), torch.as_tensor(d.y_train)
    xv, yv = torch.as_tensor(d.x_val), torch.as_tensor(d.y_val)
    return float(np.mean([accuracy(train(x, y, seed), xv, yv) for seed in seeds]))


def main() -> None:
    global SMOOTHING
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.2, 0.4])
    parser.add_argument("--smoothing-grid", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {platform.node()}, torch {torch.__version__} CPU (1 thread), "
          f"{time.strftime('%Y-%m-%d')}; mean over seeds {args.seeds}")
    scores = {s: clean_validation(s, args.seeds) for s in args.smoothing_grid}
    SMOOTHING = max(scores, key=scores.get)
    print("# clean validation accuracy by label smoothing: "
          + ", ".join(f"{s}: {v:.4f}" for s, v in scores.items()) + f" -> {SMOOTHING}")
    keys = ("auroc_derivative", "auroc_val_derivative", "auroc_loss", "auroc_l2rw", "acc_noisy",
            "acc_removed",
            "acc_positive", "acc_curated", "acc_reweighted", "acc_clean")
    print("\n| flipped | AUROC derivative | AUROC validation derivative | AUROC train loss | "
          "AUROC L2RW | acc noisy | "
          "acc removed (share = rate) | acc removed (derivative > 0) | acc curated (removed, "
          "relabelled) | acc DIVA reweighted | acc clean | curated: kept / wrong labels | "
          "cost derivative / curation / reweight / L2RW (x one training) |")
    print("|---" * 14 + "|")
    for rate in args.rates:
        runs = [run(rate, seed) for seed in args.seeds]
        mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        sd = {k: float(np.std([r[k] for r in runs])) for k in runs[0]}
        cells = [f"{mean[k]:.3f} ± {sd[k]:.3f}" for k in keys]
        kept = f"{mean['kept_curated']:.0f} / {mean['wrong_curated']:.1f}"
        cost = (f"{mean['t_derivative'] / mean['t_train']:.3f} / "
                f"{mean['t_curated'] / mean['t_train']:.2f} / "
                f"{(mean['t_derivative'] + mean['t_reweight']) / mean['t_train']:.2f} / "
                f"{mean['t_l2rw'] / mean['t_train']:.1f}")
        print(f"| {rate:.0%} | " + " | ".join(cells)
              + f" | {kept} | {cost} (train {mean['t_train']:.1f} s) |", flush=True)


if __name__ == "__main__":
    main()
