"""Bring your own model: a plain PyTorch loop that reports hypergradients to Tune.

The trainable below is an ordinary Tune function trainable (its own MLP on scikit-learn's
breast-cancer data, its own Adam loop). The lines marked ``# <- autometa`` are all it adds to
report d val_loss / d weight_decay with its checks, so that autometa's ``hypergradient``
searcher can walk the weight decay while a base searcher picks the width. Run it either way:

    autometa run examples/bring_your_own_model.yaml      # the CLI, with the file's searcher
    python examples/bring_your_own_model.py              # plain tune.Tuner code (main below)
"""

from __future__ import annotations

import os

import numpy as np
import torch
from ray import tune
from sklearn.datasets import load_breast_cancer
from torch import nn

import autometa

HERE = os.path.dirname(os.path.abspath(__file__))
SPACE_FILE = os.path.join(HERE, "bring_your_own_model.yaml")


def load_data():
    """Standardized breast-cancer features: 300 training and 269 validation samples."""
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x = (x - x[:300].mean(0)) / x[:300].std(0)
    as_tensors = (torch.tensor(x[:300], dtype=torch.float32), torch.tensor(y[:300]),
                  torch.tensor(x[300:], dtype=torch.float32), torch.tensor(y[300:]))
    return as_tensors


def train(config):
    """The user's own trainable: an MLP, a weight-decay term, full-batch Adam."""
    torch.manual_seed(config.get("seed", 0))
    x, y, x_val, y_val = load_data()
    model = nn.Sequential(nn.Linear(30, config["hidden"]), nn.Tanh(),
                          nn.Linear(config["hidden"], 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    hp = autometa.Hyperparameters.from_config(config, SPACE_FILE)          # <- autometa
    engine = autometa.ImplicitEngine(model, hp)                            # <- autometa

    def train_loss(hp):
        decay = sum((p ** 2).sum() for name, p in model.named_parameters() if "weight" in name)
        return nn.functional.cross_entropy(model(x), y) + 0.5 * hp["weight_decay"] * decay

    def val_loss(hp):
        return nn.functional.cross_entropy(model(x_val), y_val)

    start = 0
    state = autometa.restore_state()                                        # <- autometa
    if state is not None:  # a paused, failed or exploited trial goes on from its checkpoint
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    for epoch in range(start + 1, config["epochs"] + 1):
        for _ in range(config["steps_per_epoch"]):
            optimizer.zero_grad()
            train_loss(hp).backward()
            optimizer.step()
        result = engine.hypergradients(train_loss, val_loss)                # <- autometa
        with torch.no_grad():
            accuracy = float((model(x_val).argmax(1) == y_val).float().mean())
        autometa.report_hypergradients(                                     # <- autometa
            result, {"val_loss": result.val_loss, "val_accuracy": accuracy, "epoch": epoch},
            state={"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "epoch": epoch})


def main(num_samples: int = 8, storage_path: str | None = None) -> tune.ResultGrid:
    """The same search in plain Tune code: an autometa space and searcher in a tune.Tuner (the
    searcher holds the space, so the Tuner gets no param_space)."""
    space = autometa.load_space(SPACE_FILE)
    searcher = autometa.make_searcher("hypergradient", space=space, metric="val_loss",
                                      mode="min", seed=0, chains=2)
    tuner = tune.Tuner(
        autometa.finish_before_exit(train),
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=num_samples,
                                    search_alg=searcher, max_concurrent_trials=2),
        run_config=tune.RunConfig(name="bring_your_own_model", storage_path=storage_path,
                                  verbose=1),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print("best val_loss:", best.metrics["val_loss"], "config:", best.config,
          "hypergradient converged:", bool(best.metrics["hypergrad_converged"]))
    return results


if __name__ == "__main__":
    main(int(os.environ.get("NUM_SAMPLES", "8")))
