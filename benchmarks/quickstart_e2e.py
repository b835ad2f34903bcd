"""End-to-end time of the quickstart search, against the same search in plain Ray Tune.

Both runs use one local Ray (2 CPUs), the same trainable (digits MLP), the same ASHA
settings, 16 trials and 2 at a time. The anchor is Tune's own ``HyperOptSearch`` on
Tune's native form of the space (``autometa.to_tune``), in a plain ``tune.Tuner``.

    python benchmarks/quickstart_e2e.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.hyperopt import HyperOptSearch

from autometa.convert.tune import to_tune
from autometa.launch.plan import Overrides
from autometa.launch.run import run_experiment
from autometa.schedulers import make_scheduler
from autometa.space import load_space
from autometa.trainables.digits import train_digits_mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def autometa_run(storage: str) -> tuple[float, float]:
    space = load_space(os.path.join(ROOT, "search_spaces", "quickstart.yaml"))
    start = time.perf_counter()
    results, _ = run_experiment(space, Overrides(storage_path=storage), verbose=0)
    best = results.get_best_result().metrics["val_loss"]
    return time.perf_counter() - start, best


def tune_run(storage: str) -> tuple[float, float]:
    space = load_space(os.path.join(ROOT, "search_spaces", "quickstart.yaml"))
    exp = space.experiment
    start = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(train_digits_mlp, {"cpu": 1}),
        param_space=to_tune(space),
        tune_config=tune.TuneConfig(
            metric="val_loss", mode="min", num_samples=exp.num_samples,
            search_alg=ConcurrencyLimiter(HyperOptSearch(n_initial_points=6, random_state_seed=0),
                                          2),
            scheduler=make_scheduler("asha", max_t=15, grace_period=2, reduction_factor=3)),
        run_config=tune.RunConfig(storage_path=storage, stop={"training_iteration": 15},
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                                  verbose=0),
    )
    best = tuner.fit().get_best_result().metrics["val_loss"]
    return time.perf_counter() - start, best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(num_cpus=2, include_dashboard=False, logging_config=ray.LoggingConfig(log_level="WARNING"))
    print(f"# {platform.node()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}")
    print("| run | autometa (s) | Tune + HyperOptSearch (s) | ratio | autometa best val_loss | "
          "Tune best val_loss |")
    print("|---|---|---|---|---|---|")
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            ours, ours_best = autometa_run(a)
            theirs, theirs_best = tune_run(b)
        print(f"| {r + 1} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} | {ours_best:.4f} | "
              f"{theirs_best:.4f} |", flush=True)


if __name__ == "__main__":
    main()
