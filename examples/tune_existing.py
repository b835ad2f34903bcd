"""An existing Ray Tune script that swaps in an autometa space and searcher.

Only the two marked lines differ from a plain Tune script: the search space
comes from a file (`autometa.load_space`) and the searcher is autometa's TPE
(which enforces the file's conditions). Run it as is:

    python examples/tune_existing.py
"""

from __future__ import annotations

import os

import numpy as np
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss

import autometa

HERE = os.path.dirname(os.path.abspath(__file__))


def train(config):
    """The user's own trainable: a linear classifier on digits, reporting each epoch."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order] / 16.0, y[order]
    x_train, y_train, x_val, y_val = x[:1200], y[:1200], x[1200:], y[1200:]
    model = SGDClassifier(loss="log_loss", alpha=config["alpha"], eta0=config["eta0"],
                          learning_rate="constant", penalty=config["penalty"],
                          l1_ratio=config["l1_ratio"] or 0.15, random_state=0)
    for epoch in range(config["epochs"]):
        model.partial_fit(x_train, y_train, classes=np.arange(10))
        val_loss = log_loss(y_val, model.predict_proba(x_val), labels=np.arange(10))
        tune.report({"val_loss": val_loss, "val_accuracy": model.score(x_val, y_val),
                     "epoch": epoch + 1})


def main(num_samples: int = 12, storage_path: str | None = None) -> tune.ResultGrid:
    space = autometa.load_space(os.path.join(HERE, "sgd_space.yaml"))  # <- autometa
    tuner = tune.Tuner(
        train,
        param_space=autometa.to_tune(space),
        tune_config=tune.TuneConfig(
            metric="val_loss", mode="min", num_samples=num_samples,
            search_alg=autometa.make_searcher("tpe", seed=0, n_initial_points=5),  # <- autometa
            scheduler=ASHAScheduler(max_t=8, grace_period=2),
            max_concurrent_trials=2,
        ),
        run_config=tune.RunConfig(name="tune_existing", storage_path=storage_path, verbose=1),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print("best val_loss:", best.metrics["val_loss"], "config:", best.config)
    return results


if __name__ == "__main__":
    main(int(os.environ.get("NUM_SAMPLES", "12")))
