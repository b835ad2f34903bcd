"""Learned augmentation against fixed and black-box-searched policies on low-data digits (issue 5).

The ``digits_augment`` trainable: the digits CNN trained on ``--per-class`` labelled images of
each digit (fixed validation and test splits of 359 images), for ``--rounds`` rounds of 5 SGD
steps. Per seed (the labelled subset, the weights and the draws):

* no augmentation;
* torchvision's RandAugment with its defaults (N 2, M 9);
* torchvision's TrivialAugmentWide;
* RandAugment's (N, M) searched with TPE (``--tpe-trials`` trainings; the pick: best
  validation loss);
* the learned policy: 8 sub-policies of 2 operations whose probabilities and magnitudes are
  learned in the one training run by hypergradient (a hyperstep every 5 SGD steps), from
  probability and magnitude 0.1;
* the control: that policy kept at its start (``learn_policy: false``);
* the learned choice policy (``policy: choice``: one operation per image by learned weights,
  from TrivialAugment's uniform choice, by look-ahead hypergradient; issue 18);
* the gate of ``search_spaces/augment_or_not.yaml``: of the trial without augmentation and the
  learned choice policy's, the one with the lower final validation loss (both are trained).

Reported (mean ± std over seeds): accuracy at the end on the held-out images (the test split
plus the training images left unlabelled: 1,238 at 20 per class) and on the test split alone;
the learned policy's paired difference to each arm; the search cost as a multiple of one
training run without augmentation (wall time; trainings run one at a time).

    python benchmarks/augment_digits.py [--seeds 0 1 2 3 4 5] [--per-class 20] [--rounds 40]
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

from autometa.searchers import make_searcher
from autometa.space import space_from_dict
from autometa.trainables.digits_augment import train_digits_augment

GATED = "learned choice policy, or none by validation loss (both trainings)"


def fit(config: dict, storage: str, name: str, searcher=None, samples: int = 1):
    start = time.perf_counter()
    results = tune.Tuner(
        train_digits_augment, param_space=config,
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=samples,
                                    search_alg=searcher, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0)).fit()
    best = results.get_best_result(metric="val_loss", mode="min", scope="last")
    return (best.metrics["heldout_accuracy"], best.metrics["test_accuracy"],
            time.perf_counter() - start, best.metrics["val_loss"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--tpe-trials", type=int, default=8, help="0: no TPE arm")
    parser.add_argument("--only", nargs="+", help="these arms (labels) and no augmentation")
    args = parser.parse_args()
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(num_cpus=2, include_dashboard=False,
             logging_config=ray.LoggingConfig(log_level="WARNING"))
    print(f"# {platform.node()}, Ray {ray.__version__}, {time.strftime('%Y-%m-%d')}; "
          f"{args.per_class} images per class, {args.rounds} rounds, seeds {args.seeds}")
    rows: dict[str, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as storage:
        for seed in args.seeds:
            base = {"per_class": args.per_class, "rounds": args.rounds, "seed": seed}
            variants = {"no augmentation": {**base, "policy": []},
                        "RandAugment (N 2, M 9)": {**base, "augment": {
                            "kind": "randaugment", "num_ops": 2, "magnitude": 9}},
                        "TrivialAugmentWide": {**base, "augment": {"kind": "trivialaugment"}},
                        "learned policy (one run)": base,
                        "its start, not learned": {**base, "learn_policy": False},
                        "learned choice policy (one run)": {**base, "policy": "choice"}}
            for label, config in variants.items():
                if args.only and label not in args.only and label != "no augmentation":
                    continue
                rows.setdefault(label, []).append(fit(config, storage, f"{label[:8]}-{seed}"))
            gate = ("no augmentation", "learned choice policy (one run)")
            if all(label in rows and len(rows[label]) == len(rows[gate[0]]) for label in gate):
                # search_spaces/augment_or_not.yaml: the lower validation loss of the two
                # trials wins; its cost is both trainings
                pair = [rows[label][-1] for label in gate]
                held, test, _, val = min(pair, key=lambda r: r[3])
                rows.setdefault(GATED, []).append((held, test, pair[0][2] + pair[1][2], val))
            if not args.tpe_trials:
                print(f"seed {seed} done", flush=True)
                continue
            space = space_from_dict({"parameters": {
                **base, "augment": {"kind": "randaugment",
                                    "num_ops": {"type": "randint", "low": 1, "high": 3},
                                    "magnitude": {"type": "randint", "low": 0, "high": 30}}}})
            searcher = ConcurrencyLimiter(make_searcher(
                "tpe", space, metric="val_loss", mode="min", seed=seed,
                n_initial_points=min(4, args.tpe_trials)), 1)
            rows.setdefault(f"RandAugment (N, M) by TPE ({args.tpe_trials} trials)", []).append(
                fit({}, storage, f"tpe-{seed}", searcher, args.tpe_trials))
            print(f"seed {seed} done", flush=True)
    plain = np.mean([t for _, _, t, _ in rows["no augmentation"]])
    reference = "learned policy (one run)" if "learned policy (one run)" in rows else \
        "learned choice policy (one run)"
    learned = np.array([h for h, *_ in rows[reference]])
    picks = rows.get(GATED, [])
    if picks:
        none = [r[3] for r in rows["no augmentation"]]
        chose_none = sum(p[3] == n for p, n in zip(picks, none, strict=True))
        print(f"(the gate chose no augmentation on {chose_none} of {len(picks)} seeds)")
    print(f"\n(learned minus this: {reference})")
    print("\n| policy | held-out accuracy (1,238) | test accuracy (359) | learned minus this "
          "(held-out, paired) | search cost (x one training without augmentation) |")
    print("|---|---|---|---|---|")
    for label, runs in rows.items():
        held, test = np.array([r[0] for r in runs]), np.array([r[1] for r in runs])
        diff = learned - held
        cost = np.mean([r[2] for r in runs]) / plain
        print(f"| {label} | {held.mean():.3f} ± {held.std():.3f} | {test.mean():.3f} ± "
              f"{test.std():.3f} | {diff.mean():+.4f} ± {diff.std():.4f} | {cost:.1f} |")


if __name__ == "__main__":
    main()
