"""Hypergradient-guided PBT against Ray's PBT at the same budget (issue 4, second task).

Task: ``search_spaces/digits_cnn_pbt.yaml``: the digits CNN trained on 300 labelled images
(``digits_cnn_decay``), one weight decay per layer (``conv1``, ``conv2``, ``fc``; log-uniform
1e-6..1, differentiable), the optimizer (``sgd``/``adam``) and the learning rate; a population
of 8 trained for 18 epochs, perturbation every 3 epochs, bottom quarter exploits the top.

Schedulers, each on the same seeds, through Ray Tune:

* ``fifo``: the same 8 random configurations trained without perturbation (the anchor);
* ``pbt``: Ray's ``PopulationBasedTraining``, every parameter mutated by Ray's explore;
* ``hypergradient_pbt``: the decays move along the reported hypergradient, the optimizer and
  learning rate mutate as in PBT.

Reported per scheduler (mean ± std over seeds): validation CE, test CE and test accuracy of
the trial with the best final validation CE, and wall time.

    python benchmarks/population_digits_cnn.py [--seeds 0 1 2] [--population 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time

import ray

from autometa.launch.plan import Overrides
from autometa.launch.run import run_experiment
from autometa.space import Component, load_space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEDULERS = ("fifo", "pbt", "hypergradient_pbt")


def run(scheduler: str, seed: int, population: int, storage: str) -> dict[str, float]:
    space = load_space(os.path.join(ROOT, "search_spaces", "digits_cnn_pbt.yaml"))
    exp = space.experiment
    options = dict(exp.scheduler.options)
    if scheduler == "pbt":
        options.pop("step_size")
    exp.scheduler = Component(scheduler, {} if scheduler == "fifo" else options)
    exp.seed = seed
    random.seed(seed)  # Ray's PBT explores with Python's random module, in this process
    start = time.perf_counter()
    results, _ = run_experiment(space, Overrides(num_samples=population, storage_path=storage,
                                                 name=f"{scheduler}-{seed}"), verbose=0)
    wall = time.perf_counter() - start
    if results.errors:
        raise RuntimeError(f"{scheduler} seed {seed}: {results.errors}")
    best = min((r.metrics for r in results), key=lambda m: m["val_loss"])
    return {"val_loss": best["val_loss"], "test_loss": best["test_loss"],
            "test_accuracy": best["test_accuracy"], "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--population", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(num_cpus=2, include_dashboard=False,
             logging_config=ray.LoggingConfig(log_level="WARNING"))
    print(f"# {platform.node()}, 2 CPUs, Ray {ray.__version__}, {time.strftime('%Y-%m-%d')}")
    rows: dict[str, list[dict[str, float]]] = {s: [] for s in SCHEDULERS}
    with tempfile.TemporaryDirectory() as storage:
        for seed in args.seeds:
            for scheduler in SCHEDULERS:
                row = run(scheduler, seed, args.population, storage)
                rows[scheduler].append(row)
                print(f"{scheduler} seed {seed}: " +
                      ", ".join(f"{k} {v:.4f}" for k, v in row.items()), flush=True)
    print(f"\n| scheduler | val CE | test CE | test accuracy | wall (s) |  ({len(args.seeds)} "
          "seeds, mean ± std)")
    print("|---|---|---|---|---|")
    for scheduler, runs in rows.items():
        cells = []
        for key in ("val_loss", "test_loss", "test_accuracy", "wall"):
            values = [r[key] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            digits = 0 if key == "wall" else 4
            cells.append(f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}")
        print(f"| {scheduler} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
