"""Searcher ``suggest()`` latency after 10, 100 and 1,000 observed trials.

For each registered searcher, and for the Ray Tune searcher it wraps (the anchor),
feed N completed trials with a deterministic score, then time the next suggestions.
The ratio autometa/anchor is the cost of autometa's adapter (decoding, checking the
space, redrawing forbidden combinations).

    python benchmarks/suggest_latency.py [--max-observed 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import platform
import time

from ray.tune.search.bohb import TuneBOHB
from ray.tune.search.hyperopt import HyperOptSearch

from autometa.convert.configspace import to_configspace
from autometa.convert.hyperopt import to_hyperopt
from autometa.searchers import SEARCHERS, make_searcher
from autometa.space import space_from_dict

SPACE = space_from_dict({"parameters": {
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
    "wd": {"type": "loguniform", "low": 1e-6, "high": 1e-2},
    "width": {"type": "randint", "low": 8, "high": 256, "log": True},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
    "act": {"type": "choice", "values": ["relu", "tanh", "gelu"]},
    "batch": {"type": "choice", "values": [32, 64, 128]},
}})


def score(config: dict) -> float:
    import math

    return (math.log10(config["lr"]) + 2) ** 2 + config["dropout"] + \
        (0.3 if config["act"] == "tanh" else 0.0)


def anchors() -> dict:
    return {
        "tpe": lambda: HyperOptSearch(to_hyperopt(SPACE), metric="loss", mode="min",
                                      random_state_seed=0, n_initial_points=20),
        "bohb": lambda: TuneBOHB(to_configspace(SPACE, seed=0), metric="loss", mode="min",
                                 seed=0),
    }


def measure(make, checkpoints: list[int], repeats: int, decode=None) -> dict[int, float]:
    searcher = make()
    out, observed = {}, 0
    for n in checkpoints:
        while observed < n:
            trial = f"t{observed}"
            config = searcher.suggest(trial)
            if decode:
                config = decode(config)
            result = {"loss": score(config), "training_iteration": 1,
                      "hyperband_info": {"budget": 1}}
            searcher.on_trial_result(trial, result)
            searcher.on_trial_complete(trial, result)
            observed += 1
        start = time.perf_counter()
        for r in range(repeats):
            searcher.suggest(f"probe{n}_{r}")
        out[n] = (time.perf_counter() - start) / repeats
        for r in range(repeats):
            searcher.on_trial_complete(f"probe{n}_{r}", None, error=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-observed", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    checkpoints = [n for n in (10, 100, 1000) if n <= args.max_observed]
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print("| searcher | " + " | ".join(f"{n} observed (ms)" for n in checkpoints) +
          " | anchor | " + " | ".join(f"ratio at {n}" for n in checkpoints) + " |")
    print("|---" * (2 + 2 * len(checkpoints)) + "|")
    from autometa.convert.configspace import decode_configspace
    from autometa.convert.hyperopt import decode_hyperopt

    decoders = {"tpe": lambda c: SPACE.assemble(decode_hyperopt(SPACE, c)),
                "bohb": lambda c: SPACE.assemble(decode_configspace(SPACE, c))}
    for name in SEARCHERS:
        ours = measure(functools.partial(make_searcher, name, SPACE, metric="loss", mode="min",
                                         seed=0, **({"repeats": 10**6} if name == "grid" else {})),
                       checkpoints, args.repeats)
        anchor_make = anchors().get(name)
        theirs = measure(anchor_make, checkpoints, args.repeats, decoders[name]) \
            if anchor_make else None
        row = [f"{ours[n] * 1e3:.2f}" for n in checkpoints]
        if theirs:
            anchor = ["Ray " + type(anchor_make()).__name__]
            ratios = [f"{ours[n] / theirs[n]:.2f}" for n in checkpoints]
        else:
            anchor, ratios = ["(none)"], ["-" for _ in checkpoints]
        print(f"| {name} | " + " | ".join(row) + f" | {anchor[0]} | " + " | ".join(ratios) + " |",
              flush=True)
        if theirs:
            print(f"|  ({name} anchor) | " + " | ".join(f"{theirs[n] * 1e3:.2f}"
                                                        for n in checkpoints) + " | | |", flush=True)


if __name__ == "__main__":
    main()
