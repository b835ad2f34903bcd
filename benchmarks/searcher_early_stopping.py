"""The hypergradient searcher under an early-stopping scheduler (ASHA), in real Tune.

A chain compares each new point with its best so far. Under ASHA some trials stop after 1 or
3 of 9 iterations; with a metric that improves with training, a point stopped early looks
worse than a best that ran 9 iterations, whatever the point. The searcher compares at the
budget both reached (``HypergradientSearcher._at_budget``); the arm "final values" turns that
off (the behaviour before it), to measure what it changes.

Task: ``autometa.trainables.synthetic.quadratic`` with exact hypergradients
(``report_hypergrad``), 4 parameters (2 linear in [0, 1], 2 log-scale in [1e-3, 10]) in a
plain Tune space, optimum 0.5 for each (inside the box); iteration i reports q (1 + c/i)
(``--curve`` c, default 1: how much training improves the metric).
Reported per arm and seed: the best q (the metric without its training factor) after N
trials, the trials (and iterations) until it was below 1e-3, and the iterations spent.

    python benchmarks/searcher_early_stopping.py [--seeds 0 1 2 3 4] [--trials 30] [--curve 1]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time

import numpy as np
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from autometa.searchers import HypergradientSearcher, make_searcher
from autometa.trainables.synthetic import quadratic

SPACE = {"a": tune.uniform(0.0, 1.0), "b": tune.uniform(0.0, 1.0),
         "c": tune.loguniform(1e-3, 10.0), "d": tune.loguniform(1e-3, 10.0),
         "iterations": 9, "report_hypergrad": True}
GAP = 1e-3  # "reached": best q below it


class FinalValues(HypergradientSearcher):
    """The searcher as it was: a chain compares final values whatever their budgets."""

    def _at_budget(self, chain, chain_id, curve, f):  # noqa: ANN001, D102
        return f


def run(arm: str, seed: int, trials: int, storage: str, curve: float):
    if arm == "random":
        searcher = make_searcher("random", seed=seed)
    elif arm == "final values":
        searcher = FinalValues(seed=seed)
    else:
        searcher = HypergradientSearcher(seed=seed)
    scheduler = (FIFOScheduler() if arm == "equal budget, FIFO" else
                 ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3))
    tuner = tune.Tuner(
        quadratic, param_space={**SPACE, "curve": curve},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=trials,
                                    search_alg=searcher, scheduler=scheduler,
                                    max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, name=f"{arm}-{seed}".replace(" ", "_")
                                  .replace(",", ""), verbose=0))
    results = tuner.fit()
    rows = []
    for result in results:  # in the order the searcher suggested them (Tune's trial index)
        index = int(os.path.basename(result.path).split("_")[2])
        t = int(result.metrics["training_iteration"])
        rows.append((index, result.metrics["loss"] / (1 + curve / t), t))
    rows.sort()
    best, spent, reached = math.inf, 0, None
    for n, (_, q, t) in enumerate(rows, start=1):
        best, spent = min(best, q), spent + t
        if reached is None and best < GAP:
            reached = (n, spent)
    return best, spent, reached


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--curve", type=float, default=1.0,
                        help="iteration i reports q (1 + curve/i): how much training improves it")
    parser.add_argument("--arms", nargs="+", default=["equal budget", "final values", "random",
                                                       "equal budget, FIFO"])
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, logging_config=ray.LoggingConfig(
        log_level="WARNING"))
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.node()}, {args.trials} trials, "
          f"2 at a time, curve {args.curve}")
    table = {}
    with tempfile.TemporaryDirectory() as storage:
        for arm in args.arms:
            rows = [run(arm, seed, args.trials, storage, args.curve) for seed in args.seeds]
            table[arm] = rows
            bests = [b for b, _, _ in rows]
            reached = ", ".join("-" if r is None else f"{r[0]} ({r[1]})" for _, _, r in rows)
            print(f"| {arm} | {', '.join(f'{b:.2e}' for b in bests)} | "
                  f"{np.exp(np.mean(np.log(bests))):.2e} | {reached} | "
                  f"{np.mean([s for _, s, _ in rows]):.0f} |", flush=True)
    if "equal budget" in table and "final values" in table:
        ratio = np.log10([a[0] / b[0] for a, b in zip(table["equal budget"],
                                                      table["final values"], strict=True)])
        half = 2.776 * ratio.std(ddof=1) / math.sqrt(len(ratio)) if len(ratio) > 1 else math.nan
        print(f"log10(equal budget / final values): {ratio.mean():+.2f} "
              f"[{ratio.mean() - half:+.2f}, {ratio.mean() + half:+.2f}] (95 % t, paired)")


if __name__ == "__main__":
    main()
