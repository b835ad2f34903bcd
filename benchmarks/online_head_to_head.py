"""Hyperparameters learned during one run, head to head with PBT and ASHA (issue 19).

Task: the digits CNN (``digits_cnn_online``) on 300 labelled training images, SGD, validation
split 359 images, test split 359 (never seen by any arm): learning rate, momentum, a weight
decay per layer (conv1, conv2, fc) and label smoothing are continuous; the width (``hidden``
8 or 16) and the batch size (32, 64, 128) are discrete. Trials train at most 10 epochs.

Arms, all through Ray Tune with the same trainable, each on the same seeds:

* ``tpe_asha``, ``random_asha``: TPE (6 random starts) or random search over all eight
  parameters, ASHA (grace 1, reduction factor 3, max_t 10), 10 trials (about the 40 epochs
  of a population of 4); nothing learned in-trial; ``tpe_asha_large``: TPE + ASHA with 150
  trials (15 random starts), about ten times the hybrid's epochs;
* ``pbt``: Ray's PBT over all eight, a population of 4, perturbation every 2 epochs;
* ``hypergradient_pbt``: the same, the decays and the smoothing moved along the reported
  hypergradients (the trials report them, ``hyper_update: false``), the rest mutated;
* ``online``: one trial from the defaults (width 16, batch 64, lr 0.05, momentum 0.9, decays
  1e-4, smoothing 0.05) learning the five continuous parameters as it trains;
  ``online_cheap``: the same with the implicit solves on a fresh half of the training split
  (``hyper_batch: 150``) and a hyperstep every 10 steps (2 epochs) instead of 5;
* ``hybrid``: PBT (population 4) draws the width, batch size and start values and mutates the
  batch size; every trial learns the continuous parameters as it trains;
* ``hybrid_search``: the ``hypergradient`` searcher (2 chains, base random for the width and
  batch size, the first trial at the online arm's start), 5 trials of 10 epochs, each trial
  learning the continuous parameters through its steps (``loss_hypergradient: unrolled``,
  ``unroll_carry: 1``), the next trial of a chain starting from where the last one's values
  went, moved along its whole-run hypergradients.

Reported per arm: the test accuracy of the trial with the best final validation loss, the
epochs all its trials trained (the budget), wall time; mean ± std over seeds and the paired
difference to ``tpe_asha`` with a 95 % t-interval (and of the hybrid and the online arms to
``tpe_asha_large``, with their share of its epochs).

    python benchmarks/online_head_to_head.py [--seeds 0 1 2 3 4] [--overhead-only]
        [--variants-only [--variants NAME ...]] [--train-size 100]

``--variants-only``: the online arm's one trial with nothing learned, with class weights or an
augmentation policy learned too, in this process.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from typing import Any

import ray
from intervals import interval  # (benchmarks/intervals.py)

from autometa.launch.plan import Overrides
from autometa.launch.run import run_experiment
from autometa.space import space_from_dict

EPOCHS = 10
TRAIN_SIZE = [300]  # labelled training images (--train-size)
CONTINUOUS = {
    "lr": {"type": "loguniform", "low": 1e-3, "high": 0.3},
    "momentum": {"type": "uniform", "low": 0.0, "high": 0.99},
    "decay": {layer: {"type": "loguniform", "low": 1e-6, "high": 0.1}
              for layer in ("conv1", "conv2", "fc")},
    "smoothing": {"type": "uniform", "low": 0.0, "high": 0.3},
}
DISCRETE = {"hidden": {"type": "choice", "values": [8, 16]},
            "batch_size": {"type": "choice", "values": [32, 64, 128]}}


def document(arm: str, seed: int) -> dict[str, Any]:
    fixed = {"epochs": EPOCHS, "train_size": TRAIN_SIZE[0], "seed": seed, "maxiter": 10}
    experiment: dict[str, Any] = {"trainable": "digits_cnn_online", "metric": "val_loss",
                                  "mode": "min", "seed": seed, "max_concurrent_trials": 2,
                                  "stop": {"training_iteration": EPOCHS}}
    params: dict[str, Any] = {**CONTINUOUS, **DISCRETE, **fixed, "learn": "none"}
    if arm in ("tpe_asha", "random_asha", "tpe_asha_large"):
        large = arm == "tpe_asha_large"
        experiment.update(searcher={"name": "tpe", "n_initial_points": 15 if large else 6}
                          if arm != "random_asha" else "random",
                          scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 3},
                          num_samples=LARGE if large else 10)
    elif arm in ("pbt", "hypergradient_pbt"):
        experiment.update(searcher="random", num_samples=4, scheduler={
            "name": arm, "perturbation_interval": 2,
            **({"step_size": 0.5} if arm == "hypergradient_pbt" else {})})
        if arm == "hypergradient_pbt":
            for key in ("decay", "smoothing"):
                params[key] = _differentiable(CONTINUOUS[key])
            params.update(learn=["decay", "smoothing"], hyper_update=False,
                          hyper_every="epoch")  # one hypergradient per epoch, at its end
    elif arm in ("online", "online_cheap"):
        experiment.update(searcher="random", num_samples=1)
        params = {**fixed, "hidden": 16, "batch_size": 64, "hyper_every": 5}
        if arm == "online_cheap":  # solves on half the split, a hyperstep every 2 epochs
            params.update(hyper_batch=150, hyper_every=10)
    elif arm == "hybrid":
        experiment.update(searcher="random", num_samples=4, scheduler={
            "name": "pbt", "perturbation_interval": 2,
            "hyperparam_mutations": {"batch_size": [32, 64, 128]}})
        params = {**DISCRETE, "lr": {"type": "loguniform", "low": 0.01, "high": 0.2},
                  "smoothing": {"type": "uniform", "low": 0.0, "high": 0.1},
                  "hyper_every": 5, **fixed}
    elif arm == "hybrid_search":
        # the hypergradient searcher across trials (its base searcher draws the width and the
        # batch size of a chain's start), the online mode inside each: every trial learns the
        # continuous values through its steps, and reports where they went (hparams/<name>)
        # with their whole-run hypergradients, from which the next trial of its chain starts
        experiment.update(searcher={"name": "hypergradient", "base": "random", "chains": 2,
                                    "points_to_evaluate": [ONLINE_START]},
                          num_samples=HYBRID_SEARCH_TRIALS)
        params = {**_differentiable(CONTINUOUS), **DISCRETE, **fixed, "hyper_every": 5,
                  "loss_hypergradient": "unrolled", "unroll_carry": 1.0}
    else:
        raise ValueError(arm)
    return {"experiment": experiment, "parameters": params}


ONLINE_START = {"hidden": 16, "batch_size": 64, "lr": 0.05, "momentum": 0.9,
                "decay": {"conv1": 1e-4, "conv2": 1e-4, "fc": 1e-4}, "smoothing": 0.05}
"""The online arm's start (the trainable's defaults): the hybrid search's first trial."""
HYBRID_SEARCH_TRIALS = 5  # 50 epochs: under a tenth of tpe_asha_large's


def _differentiable(spec: dict[str, Any]) -> dict[str, Any]:
    if "type" in spec:
        return {**spec, "differentiable": True}
    return {k: _differentiable(v) for k, v in spec.items()}


ARMS = ("tpe_asha", "random_asha", "pbt", "hypergradient_pbt", "online", "hybrid",
        "tpe_asha_large", "online_cheap", "hybrid_search")
LARGE = 150  # trials of tpe_asha_large: about ten times the hybrid's epochs


def run(arm: str, seed: int, storage: str) -> dict[str, float]:
    space = space_from_dict(document(arm, seed))
    random.seed(seed)  # Ray's PBT explores with Python's random module, in this process
    start = time.perf_counter()
    results, _ = run_experiment(space, Overrides(storage_path=storage, name=f"{arm}-{seed}"),
                                verbose=0)
    wall = time.perf_counter() - start
    if results.errors:
        raise RuntimeError(f"{arm} seed {seed}: {results.errors}")
    best = min((r.metrics for r in results), key=lambda m: m["val_loss"])
    # a PBT trial's iterations include its donors' (its checkpoint carries their epochs), so
    # the budget is counted from each trial's own reports
    epochs = sum(len(r.metrics_dataframe) for r in results)
    return {"test_accuracy": best["test_accuracy"], "val_loss": best["val_loss"],
            "epochs": float(epochs), "wall": wall}


def overhead(repeats: int = 5) -> None:
    """Seconds per epoch of the online mode against the same epoch with nothing learned
    (this process, one thread): the hypergradients' cost in training-epoch multiples."""
    import warnings

    import torch

    from autometa.trainables.digits_cnn_online import OnlineDigitsCNN

    torch.set_num_threads(1)
    base = {"train_size": TRAIN_SIZE[0], "hidden": 16, "seed": 0, "batch_size": 64, "maxiter": 10,
            "hyper_every": 5}
    plain = None
    print("\n| learned | s / epoch | x an epoch with nothing learned |\n|---|---|---|")
    rows = [(learn, {}) for learn in ("none", ["lr", "momentum"], ["decay", "smoothing"],
                                      list(CONTINUOUS))]
    rows.append((list(CONTINUOUS), {"hyper_batch": 150}))
    for learn, extra in rows:
        run = OnlineDigitsCNN({**base, "learn": learn, **extra})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run.train_epoch()
            start = time.perf_counter()
            for _ in range(repeats):
                run.train_epoch()
        seconds = (time.perf_counter() - start) / repeats
        plain = plain or seconds
        label = learn if isinstance(learn, str) else ", ".join(learn)
        label += "".join(f"; {k} {v}" for k, v in extra.items())
        print(f"| {label} | {seconds:.4f} | {seconds / plain:.1f} |")


POOR_A = {"lr": 0.005, "momentum": 0.5, "decay": 0.01, "smoothing": 0.2}
POOR_B = {"lr": 0.5, "decay": 1e-6, "smoothing": 0.0}
VARIANTS = [  # (name, config, the row its paired difference is taken against)
    ("defaults, nothing learned", {"learn": "none"}, None),
    ("online (the arm above)", {}, "defaults, nothing learned"),
    ("online + class weights", {"learn": ["lr", "momentum", "decay", "smoothing",
                                          "class_weight"]}, "defaults, nothing learned"),
    ("online + learned augmentation", {"augment": "choice"}, "defaults, nothing learned"),
    ("learned augmentation alone", {"augment": "choice", "learn": "none"},
     "defaults, nothing learned"),
    ("augmentation frozen at its start", {"augment": "choice", "learn": "none",
                                          "hyper_update": False}, "defaults, nothing learned"),
    ("poor start A, nothing learned", {**POOR_A, "learn": "none"}, None),
    ("poor start A, online", POOR_A, "poor start A, nothing learned"),
    ("poor start B, nothing learned", {**POOR_B, "learn": "none"}, None),
    ("poor start B, online", POOR_B, "poor start B, nothing learned"),
    ("online, whole-run unroll", {"unroll_carry": 1.0}, "online (the arm above)"),
    ("online, unroll carry 0.5", {"unroll_carry": 0.5}, "online (the arm above)"),
    ("poor start A, online, whole-run unroll", {**POOR_A, "unroll_carry": 1.0},
     "poor start A, online"),
    ("poor start B, online, whole-run unroll", {**POOR_B, "unroll_carry": 1.0},
     "poor start B, online"),
    ("online, hyper_lr 0.5", {"hyper_lr": 0.5}, "online (the arm above)"),
    ("poor start A, online, hyper_lr 0.5", {**POOR_A, "hyper_lr": 0.5}, "poor start A, online"),
    ("online, loss hparams through the steps", {"loss_hypergradient": "unrolled"},
     "online (the arm above)"),
    ("online, all through the whole run", {"loss_hypergradient": "unrolled",
                                           "unroll_carry": 1.0}, "online (the arm above)"),
    ("poor start A, online, all through the whole run",
     {**POOR_A, "loss_hypergradient": "unrolled", "unroll_carry": 1.0}, "poor start A, online"),
    ("poor start B, online, all through the whole run",
     {**POOR_B, "loss_hypergradient": "unrolled", "unroll_carry": 1.0}, "poor start B, online"),
]
"""The online arm's one trial with other things learned, or from poor start values, in this
process (no Ray)."""


def variants(seeds: list[int], only: list[str] | None = None) -> None:
    """Test accuracy and validation CE of :data:`VARIANTS` (the online arm's config, 10
    epochs), mean ± std over ``seeds``, and each one's paired difference to its reference;
    ``only``: these variants (names containing one of the strings) and their references."""
    import warnings

    import torch

    from autometa.trainables.digits_cnn_online import OnlineDigitsCNN

    torch.set_num_threads(1)
    base = {"train_size": TRAIN_SIZE[0], "hidden": 16, "batch_size": 64, "maxiter": 10,
            "hyper_every": 5}
    wanted = {v[0] for v in VARIANTS if not only or any(o in v[0] for o in only)}
    for _, _, reference in reversed(VARIANTS):  # references, and theirs (listed before them)
        if reference and any(v[0] in wanted and v[2] == reference for v in VARIANTS):
            wanted.add(reference)
    chosen = [v for v in VARIANTS if v[0] in wanted]
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    for name, extra, _ in chosen:
        rows[name] = []
        for seed in seeds:
            run = OnlineDigitsCNN({**base, **extra, "seed": seed})
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                while run.epoch < EPOCHS:
                    metrics, _ = run.train_epoch()
            rows[name].append((metrics["test_accuracy"], metrics["val_loss"],
                               time.perf_counter() - start,
                               metrics.get("hparams/lr", run.optimizer.param_groups[0]["lr"]),
                               metrics.get("hparams/smoothing", float(run.fixed["smoothing"])),
                               metrics.get("hparams/decay.fc", float(run.fixed["decay.fc"]))))
    print(f"\n| one trial, {EPOCHS} epochs | test accuracy | val CE | final lr | final "
          f"smoothing | final fc decay | s / run | test accuracy - reference (paired, 95 % t) |"
          f"\n|---|---|---|---|---|---|---|---|")
    for name, _, reference in chosen:
        acc, ce, wall, lr, smoothing, decay = zip(*rows[name], strict=True)
        paired = "-" if reference is None else interval(
            [a - b[0] for a, b in zip(acc, rows[reference], strict=True)]) + f" vs {reference}"
        print(f"| {name} | {statistics.mean(acc):.4f} ± {statistics.stdev(acc):.4f} | "
              f"{statistics.mean(ce):.4f} ± {statistics.stdev(ce):.4f} | "
              f"{statistics.mean(lr):.3g} | {statistics.mean(smoothing):.3g} | "
              f"{statistics.mean(decay):.3g} | {statistics.mean(wall):.2f} | {paired} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--overhead-only", action="store_true")
    parser.add_argument("--variants-only", action="store_true")
    parser.add_argument("--arms-only", action="store_true",
                        help="the Tune arms alone (no overhead table, no variants)")
    parser.add_argument("--variants", nargs="+",
                        help="with --variants-only: the variants whose names contain these")
    parser.add_argument("--train-size", type=int, default=300)
    args = parser.parse_args()
    TRAIN_SIZE[0] = args.train_size
    if args.overhead_only:
        overhead()
        return
    if args.variants_only:
        variants(args.seeds, args.variants)
        return
    ray.init(num_cpus=2, include_dashboard=False,
             logging_config=ray.LoggingConfig(log_level="WARNING"))
    print(f"# {platform.node()}, 2 CPUs, Ray {ray.__version__}, {time.strftime('%Y-%m-%d')}, "
          f"{TRAIN_SIZE[0]} training images")
    rows: dict[str, list[dict[str, float]]] = {a: [] for a in args.arms}
    with tempfile.TemporaryDirectory() as storage:
        for seed in args.seeds:
            for arm in args.arms:
                row = run(arm, seed, storage)
                rows[arm].append(row)
                print(f"{arm} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()),
                      flush=True)
    print(f"\n| arm | test accuracy | val CE | epochs | wall (s) | test accuracy - tpe_asha "
          f"(paired, 95 % t) |  ({len(args.seeds)} seeds, mean ± std)")
    print("|---|---|---|---|---|---|")
    for arm, runs in rows.items():
        cells = []
        for key in ("test_accuracy", "val_loss", "epochs", "wall"):
            values = [r[key] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            digits = 0 if key in ("epochs", "wall") else 4
            cells.append(f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}")
        paired = (interval([r["test_accuracy"] - b["test_accuracy"]
                            for r, b in zip(runs, rows["tpe_asha"], strict=True)])
                  if "tpe_asha" in rows and arm != "tpe_asha" else "-")
        print(f"| {arm} | " + " | ".join(cells) + f" | {paired} |")
    for arm in ("hybrid", "hybrid_search", "online", "online_cheap"):
        if arm in rows and "tpe_asha_large" in rows:
            ratio = statistics.mean(r["epochs"] for r in rows[arm]) / statistics.mean(
                r["epochs"] for r in rows["tpe_asha_large"])
            print(f"\n{arm} - tpe_asha_large, test accuracy (paired, 95 % t): " + interval(
                [a["test_accuracy"] - b["test_accuracy"]
                 for a, b in zip(rows[arm], rows["tpe_asha_large"], strict=True)])
                + f"; epochs {ratio:.3f} of tpe_asha_large's")
    for arm in ("hybrid", "hybrid_search"):
        if arm in rows and "pbt" in rows:
            print(f"\n{arm} - pbt, test accuracy (paired, 95 % t): " + interval(
                [h["test_accuracy"] - p["test_accuracy"]
                 for h, p in zip(rows[arm], rows["pbt"], strict=True)]))
    if not args.arms_only:
        overhead()
        variants(args.seeds)


if __name__ == "__main__":
    main()
