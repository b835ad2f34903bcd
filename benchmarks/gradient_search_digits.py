"""Gradient-based search against black-box search on 64 per-pixel penalties (issue 4).

Task: ``search_spaces/digits_64_penalties.yaml`` (multinomial logistic regression on digits,
300/500/997 split, one log-uniform L2 penalty per pixel in e^-8..e^2; each trial trains to
convergence and reports the validation cross-entropy and its hypergradient). Every searcher
runs through Ray Tune in one session: ``random``, ``tpe`` and ``bohb`` (with its scheduler)
for ``--trials`` trainings each, ``hypergradient`` for ``--hypergradient-trials``, and the
reference ``adam``: one trial running plain Adam on the 64 log penalties from l = -4 inside
the trial (``hypersteps``), one training per step.
Reported: best validation CE after N trainings, the test CE of that trial, wall time; and a
PNG of best validation CE against trainings.

    python benchmarks/gradient_search_digits.py [--trials 100] [--hypergradient-trials 30]
        [--seeds 0 1 2] [--chains 2] [--holdout 100] [--split-seed 1]
        [--only hypergradient|adam|random|...]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time

import ray

from autometa.launch.plan import Overrides
from autometa.launch.run import run_experiment
from autometa.space import Component, load_space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINTS = (5, 10, 15, 25, 50, 100)


def run(searcher: str, trials: int, storage: str, holdout: int = 0, seed: int = 0,
        chains: int = 1, split_seed: int = 0) -> tuple[list[tuple[float, float, float]], float]:
    space = load_space(os.path.join(ROOT, "search_spaces", "digits_64_penalties.yaml"))
    if holdout:
        space = _with_constant(space, "holdout", holdout)
    if split_seed:
        space = _with_constant(space, "split_seed", split_seed)
    exp = space.experiment
    exp.seed = seed
    options = {"hypergradient": {"base": "random", "chains": chains,
                                 **({"holdout_metric": "holdout_loss"} if holdout else {})},
               "tpe": {"n_initial_points": 10}, "bohb": {}, "random": {}}[searcher]
    exp.searcher = Component(searcher, options)
    exp.scheduler = Component("bohb", {"max_t": 1}) if searcher == "bohb" else Component("fifo")
    # a chain walks sequentially: one trial per chain at a time; black-box searchers use both
    # cores
    exp.max_concurrent_trials = chains if searcher == "hypergradient" else 2
    start = time.perf_counter()
    results, _ = run_experiment(space, Overrides(num_samples=trials, storage_path=storage,
                                                 name=f"{searcher}-{seed}-{split_seed}"),
                                 verbose=0)
    wall = time.perf_counter() - start
    key = "holdout_loss" if holdout else "val_loss"
    rows = sorted((r.metrics["timestamp"], r.metrics[key], r.metrics["test_loss"])
                  for r in results if r.metrics and key in r.metrics)
    return rows, wall


def run_adam(steps: int, storage: str, split_seed: int = 0
             ) -> tuple[list[tuple[float, float, float]], float]:
    """The reference: one trial doing plain Adam on log penalties inside the trial
    (``hypersteps``, ``outer_lr`` 0.5) from l = -4, one training per step."""
    from ray import tune

    from autometa.trainables import resolve_trainable

    space = load_space(os.path.join(ROOT, "search_spaces", "digits_64_penalties.yaml"))
    penalty = {p.key.split(".", 1)[1]: math.exp(-4.0) for p in space.differentiable()}
    start = time.perf_counter()
    grid = tune.Tuner(resolve_trainable("digits_logreg"),
                      param_space={"penalty": penalty, "hypersteps": steps - 1,
                                   "split_seed": split_seed},
                      run_config=tune.RunConfig(storage_path=storage,
                                                name=f"adam-{split_seed}",
                                                verbose=0)).fit()
    wall = time.perf_counter() - start
    history = grid[0].metrics_dataframe
    rows = [(i, v, t) for i, (v, t) in enumerate(zip(history["val_loss"], history["test_loss"],
                                                     strict=True))]
    return rows[:steps], wall


def _with_constant(space, key, value):
    from autometa.space import Parameter, Space

    params = [p for p in space.parameters if p.key != key]
    params.append(Parameter(key, (key,), "constant", value=value))
    return Space(params, space.forbidden, space.experiment, space.source)


def progress(rows):
    best, out = (float("inf"), float("nan")), []
    for _, val, test in rows:
        if val < best[0]:
            best = (val, test)
        out.append(best)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--hypergradient-trials", type=int, default=30)
    parser.add_argument("--holdout", type=int, default=0,
                        help="hold out this many validation samples; the hypergradient searcher "
                             "stops chains on holdout_loss and trials are ranked by it")
    parser.add_argument("--only", help="run only this searcher")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="searcher seeds; the table shows each seed's row")
    parser.add_argument("--chains", type=int, default=1,
                        help="hypergradient chains, run at once (2 = the black-box concurrency)")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="the trainable's split_seed: another train / validation / test split")
    args = parser.parse_args()
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(num_cpus=2, include_dashboard=False,
             logging_config=ray.LoggingConfig(log_level="WARNING"))
    print(f"# {platform.node()}, 2 CPUs, Ray {ray.__version__}, {time.strftime('%Y-%m-%d')}")
    curves, walls = {}, {}
    with tempfile.TemporaryDirectory() as storage:
        if args.only in (None, "adam"):
            label = "in-trial Adam (hypersteps, from l = -4)"
            rows, walls[label] = run_adam(args.hypergradient_trials, storage, args.split_seed)
            curves[label] = progress(rows)
        for seed in args.seeds:
            for searcher, n in (("hypergradient", args.hypergradient_trials),
                                ("random", args.trials), ("tpe", args.trials),
                                ("bohb", args.trials)):
                if args.only and searcher != args.only:
                    continue
                label = f"{searcher} (seed {seed})"
                rows, walls[label] = run(searcher, n, storage, args.holdout, seed, args.chains,
                                         args.split_seed)
                curves[label] = progress(rows)
                print(f"{label}: {len(rows)} trainings in {walls[label]:.0f} s", flush=True)
    ranked = "holdout CE" if args.holdout else "val CE"
    print(f"\n(cells: best {ranked} after N trainings (test CE of that trial))")
    print("| searcher | trainings | wall (s) | " +
          " | ".join(f"after {c}" for c in CHECKPOINTS) + " |")
    print("|---" * (3 + len(CHECKPOINTS)) + "|")
    for label, curve in curves.items():
        cells = [f"{curve[c - 1][0]:.4f} ({curve[c - 1][1]:.4f})" if c <= len(curve) else "-"
                 for c in CHECKPOINTS]
        print(f"| {label} | {len(curve)} | {walls[label]:.0f} | " + " | ".join(cells) + " |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), [v for v, _ in curve], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("trainings")
    ax.set_ylabel("best validation cross-entropy")
    ax.legend()
    fig.tight_layout()
    suffix = (f"_holdout{args.holdout}" if args.holdout else "") + \
        (f"_seeds{'-'.join(map(str, args.seeds))}" if args.seeds != [0] else "") + \
        (f"_chains{args.chains}" if args.chains != 1 else "") + \
        (f"_split{args.split_seed}" if args.split_seed else "") + \
        (f"_{args.only}" if args.only else "")
    out = os.path.join(ROOT, "benchmarks", f"gradient_search_digits{suffix}.png")
    fig.savefig(out, dpi=100)
    print(f"\nplot: {out}")


if __name__ == "__main__":
    main()
