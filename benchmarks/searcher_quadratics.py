"""Hypergradient searcher on quadratics with exact hypergradients (issue 17).

:class:`autometa.testing.problems.BoxQuadratic`: 8 parameters (4 log-scale in [1e-4, 10],
4 linear in [-1, 1]) given as a plain Tune space, optimum inside the box or on its bounds
for three coordinates. The searcher is driven in-process as Tune drives it (``suggest`` /
``on_trial_complete``, ``concurrency`` trials running, the oldest finishing first). Reported:
trainings until the best loss is within 1e-3 of the box optimum, per seed, for one chain,
two chains and one chain with two probes; and whether any suggestion left the bounds.
(The test suite runs the same problem through real Tune.)

    python benchmarks/searcher_quadratics.py [--seeds 0 1 2 3 4] [--trials 40]
"""

from __future__ import annotations

import argparse
import math
import platform
import time

from autometa.searchers import make_searcher
from autometa.testing.problems import BoxQuadratic


def trainings_to(problem: BoxQuadratic, chains: int, concurrency: int, probes: int,
                 seed: int, trials: int, gap: float = 1e-3) -> tuple[int | None, bool]:
    searcher = make_searcher("hypergradient", metric="loss", mode="min", seed=seed,
                             chains=chains, probes=probes)
    searcher.set_search_properties("loss", "min", problem.tune_space())
    live, done, best, hit, inside, n = [], 0, math.inf, None, True, 0
    while done < trials:
        while len(live) < concurrency:
            config = searcher.suggest(f"t{n}")
            if config is None:
                break
            inside &= all(low <= config[k] <= high for k, (low, high, _) in problem.bounds.items())
            live.append((f"t{n}", config))
            n += 1
        trial_id, config = live.pop(0)
        result = problem(config)
        searcher.on_trial_complete(trial_id, {**result, "config": config})
        done += 1
        best = min(best, result["loss"] - problem.best)
        if hit is None and best < gap:
            hit = done
    return hit, inside


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    print(f"# {platform.node()}, {time.strftime('%Y-%m-%d')}")
    print("| optimum | setting | trainings to within 1e-3 (per seed) | all inside bounds |")
    print("|---|---|---|---|")
    for on_bound in (False, True):
        for label, chains, concurrency, probes in (("1 chain, 1 at a time", 1, 1, 1),
                                                   ("2 chains, 2 at a time", 2, 2, 1),
                                                   ("1 chain, 2 probes, 2 at a time", 1, 2, 2)):
            rows = [trainings_to(BoxQuadratic(seed, on_bound=on_bound), chains, concurrency,
                                 probes, seed, args.trials) for seed in args.seeds]
            hits = ", ".join("-" if h is None else str(h) for h, _ in rows)
            print(f"| {'on bounds' if on_bound else 'inside'} | {label} | {hits} | "
                  f"{all(inside for _, inside in rows)} |")


if __name__ == "__main__":
    main()
