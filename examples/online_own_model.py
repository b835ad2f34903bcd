"""Online mode on your own model: hyperparameters learned during one training run.

An ordinary Tune function trainable (its own MLP on scikit-learn's breast-cancer data, its own
minibatch SGD loop) whose weight decay and learning rate move every ``hyper_every`` steps
against their hypergradients, taken through the steps it trained with (no optimum assumed,
so nothing to converge). The lines marked ``# <- autometa`` are all it adds. Each report
carries the values in use (``hparams/<name>``: the trial's trajectory), the hypergradients
and a checkpoint from which a paused or failed trial resumes exactly. Run it either way:

    autometa run examples/online_own_model.yaml      # the CLI, with the file's searcher
    python examples/online_own_model.py              # plain tune.Tuner code (main below)
"""

from __future__ import annotations

import os

import numpy as np
import torch
from ray import tune
from sklearn.datasets import load_breast_cancer
from torch import nn

import autometa
from autometa.launch.durable import DurableStateCallback
from autometa.trial.keys import online_metrics

HERE = os.path.dirname(os.path.abspath(__file__))
SPACE_FILE = os.path.join(HERE, "online_own_model.yaml")


def load_data():
    """Standardized breast-cancer features: 300 training and 269 validation samples."""
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x = (x - x[:300].mean(0)) / x[:300].std(0)
    return (torch.tensor(x[:300], dtype=torch.float32), torch.tensor(y[:300]),
            torch.tensor(x[300:], dtype=torch.float32), torch.tensor(y[300:]))


def train(config):
    """The user's own trainable: an MLP, a weight-decay term, minibatch SGD with momentum."""
    torch.manual_seed(config.get("seed", 0))
    x, y, x_val, y_val = load_data()
    model = nn.Sequential(nn.Linear(30, config["hidden"]), nn.Tanh(),
                          nn.Linear(config["hidden"], 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    hp = autometa.Hyperparameters.from_config(config, SPACE_FILE)          # <- autometa
    unroll = autometa.UnrolledEngine(model, optimizer, hp,                 # <- autometa
                                     loss_hparams=["weight_decay"])
    updater = autometa.OnlineUpdater(hp, lr=0.05)                          # <- autometa

    def train_loss(hp, xb, yb):
        decay = sum((p ** 2).sum() for name, p in model.named_parameters() if "weight" in name)
        return nn.functional.cross_entropy(model(xb), yb) + 0.5 * hp["weight_decay"] * decay

    def val_loss(hp):
        return nn.functional.cross_entropy(model(x_val), y_val)

    start, step, result = 0, None, None
    state = autometa.restore_state()                                        # <- autometa
    if state is not None:  # a paused, failed or exploited trial goes on from its checkpoint
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        unroll.load_state_dict(state["unroll"])                             # <- autometa
        updater.load_state_dict(state["updater"])                           # <- autometa
        start = state["epoch"]
    for epoch in range(start + 1, config["epochs"] + 1):
        order = torch.as_tensor(np.random.default_rng([config.get("seed", 0), epoch])
                                .permutation(len(y)))
        for i in range(config["steps_per_epoch"]):
            rows = order[(i * 32) % len(y):][:32]
            unroll.step(lambda h, rows=rows: train_loss(h, x[rows], y[rows]))  # <- autometa
            if (i + 1) % config["hyper_every"] == 0:
                result = unroll.hypergradients(val_loss)                    # <- autometa
                step = updater.step(result)                                 # <- autometa
        with torch.no_grad():
            metrics = {"val_loss": float(val_loss(None)), "epoch": epoch,
                       "val_accuracy": float((model(x_val).argmax(1) == y_val).float().mean())}
        if step is not None:
            metrics.update(online_metrics(step, updater))                   # <- autometa
        autometa.report_hypergradients(                                     # <- autometa
            result and result.at(updater.values()), metrics,  # hparams/: the values now
            state={"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "unroll": unroll.state_dict(), "updater": updater.state_dict(),
                   "epoch": epoch})


def main(num_samples: int = 4, storage_path: str | None = None) -> tune.ResultGrid:
    """The same search in plain Tune code: random search over the width and the start values,
    the values learned inside each trial."""
    space = autometa.load_space(SPACE_FILE)
    tuner = tune.Tuner(
        autometa.finish_before_exit(train),
        param_space=autometa.to_tune(space),
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=num_samples,
                                    max_concurrent_trials=2,  # the same start values each run
                                    search_alg=tune.search.BasicVariantGenerator(
                                        random_state=0)),
        # DurableStateCallback: a retried trial keeps all its reports (Tune's result loggers
        # alone may copy older results back over newer ones when a trial starts again)
        run_config=tune.RunConfig(name="online_own_model", storage_path=storage_path,
                                  verbose=1, callbacks=[DurableStateCallback()],
                                  failure_config=tune.FailureConfig(max_failures=2)),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print("best val_loss:", best.metrics["val_loss"], "learned weight decay:",
          best.metrics["hparams/weight_decay"], "learned lr:", best.metrics["hparams/lr"])
    return results


if __name__ == "__main__":
    main(int(os.environ.get("NUM_SAMPLES", "4")))
