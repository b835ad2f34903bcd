"""Racing against ASHA at matched budgets, many repetitions in-process (issue 7).

``racing_selection.py`` runs the methods through Ray Tune, which affords tens of repetitions:
too few to tell choice rates a few points apart. Here both run in-process on the same task
(see ``racing_selection.py``), over many repetitions and a grid of settings:

* racing: the :class:`autometa.racing.Race` object the ``race`` searcher uses;
* ASHA: Ray's own ``ASHAScheduler`` deciding on each result (its real code, no Tune loop),
  with trials run ``--concurrency`` at a time in grid order and each instance taking the same
  time, as in the Tune runs; its choice is the best running mean among the trials that
  reached the most instances.

For each setting: how often it picks what full evaluation picks, how often it picks the truly
best configuration, and its evaluations as a share of full evaluation (320). The last table
pairs each ASHA setting with the best race that uses no more evaluations.

    python benchmarks/racing_frontier.py [--reps 1000] [--noise 0.03] [--noise-df 2]
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import ray
from racing_selection import (
    N_CONFIGS,
    N_INSTANCES,
    configs,
    full_choice,
    instances,
    simulated_race,
    true_best,
)
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler

from autometa.trainables.synthetic import instance_score

FULL = N_CONFIGS * N_INSTANCES


def simulated_asha(cands: list[dict], rep: int, grace: int, reduction: int,
                   concurrency: int = 2) -> tuple[int, int]:
    """(choice, evaluations) of Ray's ASHAScheduler on one repetition."""
    scheduler = ASHAScheduler(metric="loss", mode="min", max_t=N_INSTANCES, grace_period=grace,
                              reduction_factor=reduction)
    keys, queue = instances(rep), list(range(len(cands)))
    running: dict[int, tuple[Trial, list[float], int]] = {}  # config -> trial, scores, start
    ended, evaluations, now = [], 0, 0
    while queue or running:
        while queue and len(running) < concurrency:
            c = queue.pop(0)
            trial = Trial("__fake", trial_id=f"t{c}", stub=True)
            scheduler.on_trial_add(None, trial)
            running[c] = (trial, [], now)
        # the next result: the running trial whose next instance ends first
        c = min(running, key=lambda c: (running[c][2] + len(running[c][1]) + 1, c))
        trial, scores, start = running[c]
        now = start + len(scores) + 1
        scores.append(instance_score(cands[c], keys[len(scores)]))
        evaluations += 1
        result = {"loss": float(np.mean(scores)), "training_iteration": len(scores),
                  "time_total_s": float(len(scores))}
        if scheduler.on_trial_result(None, trial, result) == "STOP" or \
                len(scores) == N_INSTANCES:
            scheduler.on_trial_complete(None, trial, result)
            ended.append((len(scores), result["loss"], c))
            del running[c]
    top = max(seen for seen, _, _ in ended)
    return min((loss, c) for seen, loss, c in ended if seen == top)[1], evaluations


def _interval(p: float, n: int) -> str:
    half = 1.96 * math.sqrt(max(p * (1 - p), 1e-12) / n)
    return f"{p:.3f} ± {half:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=0.03)
    parser.add_argument("--noise-df", type=float, default=None)
    parser.add_argument("--instance-effect", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    cands = configs(args.noise, args.instance_effect, args.noise_df)
    best, reps = true_best(cands), range(args.reps)
    full = np.array([full_choice(cands, r) for r in reps])
    print(f"# {platform.node()}, Ray {ray.__version__}, {time.strftime('%Y-%m-%d')}; noise "
          f"{args.noise} (t df {args.noise_df}), instance effect {args.instance_effect}; "
          f"{args.reps} repetitions; full evaluation picks the truly best "
          f"{np.mean(full == best):.3f}")
    settings: dict[str, object] = {}
    for grace in (1, 2, 3):
        for reduction in (2, 3, 4):
            settings[f"ASHA grace {grace}, reduction {reduction}"] = \
                lambda r, g=grace, e=reduction: simulated_asha(cands, r, g, e, args.concurrency)
    for test in ("friedman", "t"):
        for first in (2, 3, 5):
            for alpha in (0.05, 0.1, 0.2):
                settings[f"race {test}, min_instances {first}, alpha {alpha}"] = \
                    lambda r, t=test, m=first, a=alpha: simulated_race(
                        cands, r, test=t, min_instances=m, alpha=a)
    rows = []
    print("\n| setting | agrees with full evaluation | picks the truly best | evaluations "
          "(of full) |\n|---|---|---|---|")
    for name, run in settings.items():
        out = [run(r) for r in reps]
        chosen = np.array([c for c, _ in out])
        agree, right = np.mean(chosen == full), np.mean(chosen == best)
        share = np.mean([e for _, e in out]) / FULL
        rows.append((name, agree, right, share))
        print(f"| {name} | {_interval(agree, args.reps)} | {_interval(right, args.reps)} | "
              f"{share:.3f} |", flush=True)
    races = [row for row in rows if row[0].startswith("race")]
    print("\n| ASHA setting (share) | its agreement | best race within that share | race's "
          "agreement |\n|---|---|---|---|")
    for name, agree, _, share in (row for row in rows if row[0].startswith("ASHA")):
        within = [row for row in races if row[3] <= share]
        if not within:
            print(f"| {name} ({share:.3f}) | {agree:.3f} | none | |")
            continue
        top = max(within, key=lambda row: row[1])
        print(f"| {name} ({share:.3f}) | {agree:.3f} | {top[0]} ({top[3]:.3f}) | "
              f"{top[1]:.3f} |")


if __name__ == "__main__":
    main()
