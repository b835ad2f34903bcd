"""Racing against ASHA, Hyperband and full evaluation on a noisy selection task (issue 7).

Task: 32 configurations ``x`` evenly spaced in [0, 1.55] with true mean ``(x - 0.5)^2`` (the
truly best is the one nearest 0.5); a configuration's score on instance k adds an offset
shared by every configuration on that instance (sd ``--instance-effect``) and noise of its own
(sd ``--noise``): :func:`autometa.trainables.synthetic.instance_score`. Up to 10 instances.
Each repetition draws fresh instances (their seeds are ``1000 * rep + k``).

* full evaluation: every configuration on all 10 instances (320 evaluations), best mean;
  computed from the same score function;
* racing (``race``, Friedman + Conover, Holm, alpha 0.05, ``min_instances`` 5), through Tune;
* ASHA (grace period 1 and 3 instances, reduction factor 3, max 10 instances) and Hyperband
  (max 10 instances), through Tune: one trial per configuration reporting its running mean
  over instances, so they stop configurations after some instances. Their choice: the best
  running mean among the trials that reached the most instances (for Hyperband, the best
  mean over the first 9 instances among the trials that reached a bracket's last milestone,
  9 or 10 instances: its least aggressive bracket alone runs to 10).

Reported over repetitions: how often each method picks the truly best configuration, how
often it agrees with full evaluation, and its mean number of evaluations. ``--simulated N``
also runs N repetitions of the same race in-process (the :class:`autometa.racing.Race`
object the searcher uses, without Tune) for a tighter estimate of racing's rates.

    python benchmarks/racing_selection.py [--reps 10] [--simulated 500]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from autometa.racing import Race, RaceSettings
from autometa.schedulers.brackets import hyperband_bracket_sizes
from autometa.searchers import make_searcher
from autometa.space import space_from_dict
from autometa.trainables.synthetic import instance_score, noisy_instances

N_CONFIGS, N_INSTANCES = 32, 10
MIN_INSTANCES = 5


def configs(noise: float, effect: float, df: float | None = None) -> list[dict]:
    extra = {"noise_df": df} if df else {}
    return [{"x": float(x), "noise": noise, "instance_effect": effect, **extra}
            for x in np.linspace(0.0, 1.55, N_CONFIGS)]


def instances(rep: int) -> list[int]:
    return [1000 * rep + k for k in range(N_INSTANCES)]


def full_choice(cands: list[dict], rep: int) -> int:
    scores = [[instance_score(c, k) for k in instances(rep)] for c in cands]
    return int(np.argmin(np.mean(scores, axis=1)))


def true_best(cands: list[dict]) -> int:
    return int(np.argmin([(c["x"] - 0.5) ** 2 for c in cands]))


def race_in_tune(cands: list[dict], rep: int, storage: str) -> tuple[int, int]:
    space = space_from_dict({"parameters": {
        "x": {"type": "uniform", "low": 0.0, "high": 1.55},
        **{k: v for k, v in cands[0].items() if k != "x"}}})
    searcher = make_searcher("race", space, metric="loss", mode="min", seed=rep, candidates=0,
                             configs=cands, min_instances=MIN_INSTANCES,
                             max_instances=N_INSTANCES, instances=instances(rep))
    results = tune.Tuner(
        noisy_instances,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=-1, reuse_actors=True,
                                    search_alg=ConcurrencyLimiter(searcher, 2)),
        run_config=tune.RunConfig(storage_path=storage, name=f"race-{rep}", verbose=0)).fit()
    chosen = searcher.best_config()["x"]
    return next(i for i, c in enumerate(cands) if c["x"] == chosen), len(results)


def scheduler_in_tune(name: str, cands: list[dict], rep: int, storage: str,
                      grace: int = 1) -> tuple[int, int]:
    if name == "asha":
        scheduler = tune.schedulers.ASHAScheduler(max_t=N_INSTANCES, grace_period=grace,
                                                  reduction_factor=3)
    else:
        scheduler = tune.schedulers.HyperBandScheduler(max_t=N_INSTANCES, reduction_factor=3)
    # Tune's synchronous Hyperband stops nothing unless a whole band may be in flight.
    in_flight = 2 if name == "asha" else sum(hyperband_bracket_sizes(N_INSTANCES, 3))
    start = time.perf_counter()
    results = tune.Tuner(
        noisy_instances,
        param_space={**{k: v for k, v in cands[0].items() if k != "x"},
                     "x": tune.grid_search([c["x"] for c in cands]), "instances": instances(rep)},
        # Ray's HyperBandScheduler sometimes leaves one trial PAUSED after its last instance and
        # never ends the run; the time budget ends it (every score is in by then)
        tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=scheduler,
                                    max_concurrent_trials=in_flight, reuse_actors=True,
                                    time_budget_s=None if name == "asha" else 90),
        run_config=tune.RunConfig(storage_path=storage, name=f"{name}{grace}-{rep}",
                                  verbose=0)).fit()
    if time.perf_counter() - start > 85:
        print(f"rep {rep}: {name} did not end by itself (stopped by the time budget)", flush=True)
    rows = [(r.metrics["instances_seen"], r.metrics["loss"], r.config["x"]) for r in results]
    evaluations = sum(seen for seen, _, _ in rows)
    top = max(seen for seen, _, _ in rows)
    if name == "hyperband":  # each bracket's survivors end at its last milestone: 9 or 10;
        # compare them all on their first 9 instances (the shared instance offsets make means
        # over different instances incomparable)
        top = min(top, max(3 ** k for k in range(4) if 3 ** k < N_INSTANCES))
        rows = [(top, _loss_at(r, top), r.config["x"]) for r in results
                if r.metrics["instances_seen"] >= top]
    chosen = min((loss, x) for seen, loss, x in rows if seen >= top)[1]
    return next(i for i, c in enumerate(cands) if c["x"] == chosen), evaluations


def _loss_at(result, seen: int) -> float:
    history = result.metrics_dataframe
    return float(history.loc[history["instances_seen"] == seen, "loss"].iloc[-1])


def simulated_race(cands: list[dict], rep: int, **settings) -> tuple[int, int]:
    """(choice, evaluations) of one race in-process (``settings``: of ``RaceSettings``)."""
    race = Race(len(cands), RaceSettings(**{"min_instances": MIN_INSTANCES,
                                            "max_instances": N_INSTANCES, **settings}))
    keys = instances(rep)
    while (pair := race.next_pair()) is not None:
        c, k = pair
        race.record(c, k, instance_score(cands[c], keys[k]))
    return race.best(), race.evaluations()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--simulated", type=int, default=500)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--instance-effect", type=float, default=1.0)
    parser.add_argument("--noise-df", type=float, default=None,
                        help="Student-t noise with these degrees of freedom (default: normal)")
    parser.add_argument("--min-instances", type=int, default=MIN_INSTANCES)
    parser.add_argument("--no-hyperband", action="store_true",
                        help="skip Tune's HyperBandScheduler (it can hang on paused trials of "
                             "this checkpoint-free trainable)")
    parser.add_argument("--only", nargs="+", choices=("race", "asha1", "asha3", "hyperband"),
                        help="run only these methods through Tune")
    args = parser.parse_args()
    globals()["MIN_INSTANCES"] = args.min_instances
    cands = configs(args.noise, args.instance_effect, args.noise_df)
    best = true_best(cands)
    print(f"# {platform.node()}, 2 CPUs, Ray {ray.__version__}, {time.strftime('%Y-%m-%d')}; "
          f"noise {args.noise} (t df {args.noise_df}), instance effect {args.instance_effect}; "
          f"min_instances {args.min_instances}; truly best x = "
          f"{cands[best]['x']:.3f} (next {cands[best + 1]['x']:.3f}, {cands[best - 1]['x']:.3f})")
    rows: dict[str, list[tuple[int, int, int]]] = {}  # method -> (choice, evaluations, rep)
    for rep in range(args.simulated):
        rows.setdefault("race (in-process)", []).append((*simulated_race(cands, rep), rep))
    if args.reps:
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        ray.init(num_cpus=2, include_dashboard=False,
                 logging_config=ray.LoggingConfig(log_level="WARNING"))
        with tempfile.TemporaryDirectory() as storage:
            for rep in range(args.reps):
                start = time.perf_counter()
                wanted = set(args.only or ("race", "asha1", "asha3", "hyperband"))
                if args.no_hyperband:
                    wanted.discard("hyperband")
                if "race" in wanted:
                    rows.setdefault("race (Tune)", []).append(
                        (*race_in_tune(cands, rep, storage), rep))
                for name, grace in (("asha", 1), ("asha", 3), ("hyperband", 1)):
                    if (name if name == "hyperband" else f"{name}{grace}") not in wanted:
                        continue
                    label = f"{name} (grace {grace})" if name == "asha" else name
                    rows.setdefault(label, []).append(
                        (*scheduler_in_tune(name, cands, rep, storage, grace), rep))
                if rep % 10 == 0:
                    print(f"rep {rep}: {time.perf_counter() - start:.0f} s", flush=True)
    full = {rep: full_choice(cands, rep) for rep in range(max(args.simulated, args.reps))}
    full_rate = np.mean([full[r] == best for r in range(max(args.simulated, args.reps))])
    print("\n| method | repetitions | P(truly best) | P(same as full evaluation) | evaluations "
          "(mean) | of full |")
    print("|---|---|---|---|---|---|")
    print(f"| full evaluation | {max(args.simulated, args.reps)} | {full_rate:.2f} | 1.00 | "
          f"{N_CONFIGS * N_INSTANCES} | 1.00 |")
    for label, runs in rows.items():
        chosen = np.array([c for c, _, _ in runs])
        agree = np.mean([c == full[r] for c, _, r in runs])
        evaluations = np.mean([e for _, e, _ in runs])
        print(f"| {label} | {len(runs)} | {np.mean(chosen == best):.2f} | {agree:.2f} | "
              f"{evaluations:.0f} | {evaluations / (N_CONFIGS * N_INSTANCES):.2f} |")


if __name__ == "__main__":
    main()
