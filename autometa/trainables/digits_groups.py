r"""Per-group sample weights as hyperparameters, scored without a validation set (DIVA).

The training samples of digits come from ``sources`` data sources (a fixed random split), some
of which have wrong labels (``source_noise``: the share of each source's labels flipped to
another class); or, with ``group_by: class``, the groups are the classes. Each group g has a
weight :math:`w_g` (config key ``weight_<g>``: ``weight_s0``, ``weight_s1``, ... or
``weight_c0`` ... ``weight_c9``) and every sample i of the group gets :math:`\alpha_i = w_g`.

A trial fits the weighted ridge model of :mod:`autometa.data.loo` on the standardized pixels
(plus a bias) and reports its closed-form leave-one-out error ``loo_error`` with, by the chain
rule, :math:`\partial L_{LOO}/\partial w_g = \sum_{i \in g} \partial L_{LOO}/\partial
\alpha_i` as ``hypergrad/weight_<g>`` (:func:`autometa.data.curation.group_hypergradients`), so
the ``hypergradient`` searcher can walk the weights. It also reports what the weights do on
clean held-out labels: ``val_loss`` (squared error of the one-hot targets) and
``val_accuracy``. With ``objective: val_loss`` the hypergradients are those of ``val_loss``
instead (autograd through the same closed form): the leave-one-out error counts every
training sample against its own label, wrong ones included, so it keeps some weight on a noisy
source, while the clean held-out loss pushes that weight towards zero. One report per trial:
the model is exact, there is nothing to iterate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from autometa.data.curation import group_hypergradients
from autometa.data.digits import load_digits_standardized
from autometa.data.loo import loo_error, one_hot, weighted_ridge
from autometa.trial.keys import hypergrad_metrics

CLASSES = 10


def group_weight_scores(config: dict[str, Any]) -> dict[str, float]:
    """The metrics a trial reports for ``config`` (pure: no Ray; float64)."""
    group_by = config.get("group_by", "source")
    if group_by not in ("source", "class"):
        raise ValueError(f"group_by must be 'source' or 'class', got {group_by!r}")
    seed = int(config.get("seed", 0))
    data = load_digits_standardized(int(config.get("n_train", 600)),
                                    int(config.get("n_val", 500)), seed)
    rng = np.random.default_rng(seed)
    sources = int(config.get("sources", 4))
    source = rng.integers(0, sources, len(data.y_train))
    labels = np.array(data.y_train)
    for s, share in enumerate(config.get("source_noise", [0.0] * sources)):
        flip = (source == s) & (rng.random(len(labels)) < float(share))
        labels[flip] = (labels[flip] + rng.integers(1, CLASSES, int(flip.sum()))) % CLASSES
    groups = [f"s{s}" for s in source] if group_by == "source" else [f"c{c}" for c in labels]
    names = sorted(set(groups))
    missing = [g for g in names if f"weight_{g}" not in config]
    if missing:
        raise ValueError(f"config has no weight for group(s) {missing}: add "
                         + ", ".join(f"weight_{g}" for g in missing))
    objective = config.get("objective", "loo_error")
    if objective not in ("loo_error", "val_loss"):
        raise ValueError(f"objective must be 'loo_error' or 'val_loss', got {objective!r}")
    alpha = torch.tensor([float(config[f"weight_{g}"]) for g in groups], dtype=torch.float64,
                         requires_grad=True)
    features, targets = _with_bias(data.x_train), one_hot(torch.as_tensor(labels), CLASSES)
    ridge = float(config.get("ridge", 1.0))
    out = {"loo_error": loo_error(features, targets, alpha, ridge),
           **_held_out(features, targets, alpha, ridge, data)}
    (derivative,) = torch.autograd.grad(out[objective], alpha)
    out = {k: float(v.detach()) for k, v in out.items()}
    grads = {f"weight_{name}": value for name, value in
             group_hypergradients(derivative, groups).items()}
    # a closed form through an exact solve: nothing to converge
    out.update(hypergrad_metrics(grads, {n: float(config[n]) for n in grads}))
    return out


def _with_bias(x: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    return torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)


def _held_out(features: torch.Tensor, targets: torch.Tensor, alpha: torch.Tensor, ridge: float,
              data: Any) -> dict[str, torch.Tensor]:
    # the weighted ridge model, scored on the clean held-out samples
    scores = _with_bias(data.x_val) @ weighted_ridge(features, targets, alpha, ridge)
    truth = torch.as_tensor(np.asarray(data.y_val))
    return {"val_loss": ((scores - one_hot(truth, CLASSES)) ** 2).sum(dim=1).mean(),
            "val_accuracy": (scores.argmax(dim=1) == truth).double().mean()}


def digits_group_weights(config: dict[str, Any]) -> None:
    """Tune trainable: one report of :func:`group_weight_scores`."""
    from ray import tune

    tune.report(group_weight_scores(config))
