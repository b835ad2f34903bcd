r"""Data curation from the dataset derivative :math:`\partial L_{LOO} / \partial \alpha`.

All functions work on features (N x D, e.g. a network's penultimate activations, with a column
of ones for a bias) and integer labels, with the weighted ridge model of
:mod:`autometa.data.loo` on one-hot targets. Pure torch; no Ray.

* :func:`suspects`: samples whose up-weighting raises the leave-one-out error most (a wrong
  label is the typical cause), flagged by a share or a threshold.
* :func:`validation_derivative`: the same per-sample derivative of a separate validation
  loss, through the hypergradient engine (implicit differentiation), for comparison.
* :func:`reweight`: projected gradient descent on :math:`\alpha` in a box (DIVA's reweighting),
  keeping the weights with the lowest leave-one-out error.
* :func:`extension_scores`: for a pool of candidate samples, how adding each one changes the
  training samples' leave-one-out error (exactly, or to first order from the derivative at
  weight 0), to pick which samples to add.
* :func:`relabel`: the second pass of curation: a model retrained on the unflagged samples
  decides for each suspect whether to keep its label, take the model's, or drop it.
* :func:`group_hypergradients`: the chain rule to per-group weights
  (:math:`\alpha_i = w_{g(i)} \Rightarrow \partial L/\partial w_g = \sum_{i \in g} \partial
  L/\partial \alpha_i`), reported as ``hypergrad/<name>`` for the gradient-based searchers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from autometa.data.loo import loo_gradient, loo_residuals, one_hot, weighted_ridge
from autometa.hypergrad.implicit import hypergradient


def dataset_derivative(features: torch.Tensor, labels: torch.Tensor,
                       weights: torch.Tensor | None = None, ridge: float = 1e-3,
                       classes: int | None = None) -> tuple[float, torch.Tensor]:
    """Leave-one-out error and :math:`\\partial L_{LOO}/\\partial \\alpha` for labelled samples."""
    return loo_gradient(features, one_hot(labels, classes, features.dtype), weights, ridge)


def validation_derivative(features: torch.Tensor, labels: torch.Tensor,
                          val_features: torch.Tensor, val_labels: torch.Tensor,
                          weights: torch.Tensor | None = None, ridge: float = 1e-3,
                          classes: int | None = None, method: str = "cg",
                          **options: float) -> tuple[float, torch.Tensor]:
    r"""Validation loss of weighted ridge and its derivative per training sample weight.

    Inner problem :math:`W^*(\alpha) = \arg\min_W \sum_i \alpha_i \|y_i - W^\top\phi_i\|^2
    + \lambda \|W\|^2` (solved in closed form); outer loss
    :math:`L_{val} = \frac{1}{M}\sum_j \|y_j - W^{*\top}\phi_j\|^2`; the derivative
    :math:`dL_{val}/d\alpha = -\nabla_W L_{val}^\top H^{-1} \partial^2 L_{train}/\partial W
    \partial\alpha` by the implicit function theorem, computed by
    :func:`autometa.hypergrad.implicit.hypergradient` with ``method`` (``cg`` by default, run
    to convergence: the inner problem is quadratic). Needs labelled validation data, which the
    leave-one-out derivative does not.
    """
    classes = classes or int(max(labels.max(), val_labels.max())) + 1
    y, yv = one_hot(labels, classes, features.dtype), one_hot(val_labels, classes, features.dtype)
    alpha = torch.ones(len(labels), dtype=features.dtype, device=features.device) \
        if weights is None else weights.to(features.dtype)
    w = weighted_ridge(features, y, alpha, ridge)

    def train_loss(p: dict, h: dict) -> torch.Tensor:
        residual = y - features @ p["w"]
        return (h["alpha"] * (residual ** 2).sum(dim=1)).sum() + ridge * (p["w"] ** 2).sum()

    def val_loss(p: dict, h: dict) -> torch.Tensor:
        return ((yv - val_features @ p["w"]) ** 2).sum(dim=1).mean()

    options = {"maxiter": 4 * features.shape[1] * classes, "tol": 1e-12, **options} \
        if method == "cg" else options
    grads = hypergradient(train_loss, val_loss, {"w": w}, {"alpha": alpha}, method=method,
                          check=False, **options)
    return float(val_loss({"w": w}, {})), grads["alpha"]


def suspects(derivative: torch.Tensor, share: float | None = 0.1,
             threshold: float | None = None) -> torch.Tensor:
    """Boolean mask of suspect samples: the ``share`` with the largest derivative, or those
    above ``threshold`` (when given), and always only those with a positive derivative.

    Raises:
        ValueError: ``share`` outside (0, 1] with no threshold.
    """
    positive = derivative > 0
    if threshold is not None:
        return positive & (derivative > threshold)
    if share is None or not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    count = max(1, int(round(share * len(derivative))))
    mask = torch.zeros_like(positive)
    mask[torch.topk(derivative, count).indices] = True
    return mask & positive


def reweight(features: torch.Tensor, labels: torch.Tensor, steps: int = 20,
             step_size: float = 0.5, box: tuple[float, float] = (0.0, 1.0), ridge: float = 1e-3,
             classes: int | None = None) -> tuple[torch.Tensor, list[float]]:
    """DIVA reweighting: :math:`\\alpha \\leftarrow \\Pi_{box}(\\alpha - \\eta\\, g / \\|g\\|_\\infty)`.

    Starts at :math:`\\alpha = 1` (clipped to the box); the step is normalized so that
    ``step_size`` is the largest change of one weight. Returns the weights with the lowest
    leave-one-out error seen and the error after each step (the first entry: unweighted).
    """
    low, high = box
    if not 0 <= low < high:
        raise ValueError(f"box must satisfy 0 <= low < high, got {box}")
    alpha = torch.ones(features.shape[0], dtype=features.dtype,
                       device=features.device).clamp(low, high)
    history, best = [], (float("inf"), alpha)
    for _ in range(steps + 1):
        error, grad = dataset_derivative(features, labels, alpha, ridge, classes)
        history.append(error)
        if error < best[0]:
            best = (error, alpha.clone())
        size = float(grad.abs().max())
        if size == 0:
            break
        alpha = (alpha - step_size * grad / size).clamp(low, high)
    return best[1], history


def extension_scores(features: torch.Tensor, labels: torch.Tensor,
                     pool_features: torch.Tensor, pool_labels: torch.Tensor,
                     ridge: float = 1e-3, classes: int | None = None,
                     method: str = "exact") -> torch.Tensor:
    r"""How adding each pool sample changes the training samples' leave-one-out error.

    ``method="exact"``: :math:`L^{train}_{LOO}` with the sample added at weight 1 minus without
    it (one closed form per candidate). ``method="derivative"``:
    :math:`\partial L^{train}_{LOO}/\partial \alpha_j` at :math:`\alpha_j = 0` (one closed form
    for the whole pool), a first-order screen only: the error is not monotone in a weight
    (a wrongly labelled candidate can help at a tiny weight and hurt at weight 1), so rank by
    ``exact`` when the pool is small enough. Negative: adding it helps.
    """
    if method not in ("exact", "derivative"):
        raise ValueError(f"method must be 'exact' or 'derivative', got {method!r}")
    n = features.shape[0]
    classes = classes or int(max(labels.max(), pool_labels.max())) + 1
    x = torch.cat([features, pool_features])
    y = one_hot(torch.cat([labels, pool_labels]), classes, features.dtype)

    def train_error(alpha: torch.Tensor) -> torch.Tensor:
        return (loo_residuals(x, y, alpha, ridge)[:n] ** 2).sum(dim=1).mean()

    alpha = torch.cat([torch.ones(n, dtype=x.dtype, device=x.device),
                       torch.zeros(len(pool_labels), dtype=x.dtype, device=x.device)])
    if method == "derivative":
        alpha.requires_grad_(True)
        (grad,) = torch.autograd.grad(train_error(alpha), alpha)
        return grad[n:]
    with torch.no_grad():
        base = train_error(alpha)
        scores = []
        for j in range(len(pool_labels)):
            added = alpha.clone()
            added[n + j] = 1.0
            scores.append(train_error(added) - base)
    return torch.stack(scores)


def relabel(labels: torch.Tensor, suspect: torch.Tensor, probabilities: torch.Tensor,
            confidence: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Second pass of curation: suspects judged by a model trained without them.

    For each suspect, with :math:`p` the model's class probabilities: keep its label when it is
    the model's prediction (a hard but right sample); otherwise take the prediction when
    :math:`\max_c p_c >` ``confidence``; otherwise drop the sample. Unflagged samples keep
    their labels. ``probabilities`` should come from a model trained on the unflagged samples
    only, so that it has not fitted the suspects' labels.

    Args:
        labels: Given labels (N,).
        suspect: Boolean mask (N,), e.g. from :func:`suspects` (``threshold=0``).
        probabilities: (N, C) class probabilities of that model for every sample.
        confidence: Smallest top probability to replace a suspect's label.

    Returns:
        The new labels (N,) and the boolean mask of samples to train on.

    Raises:
        ValueError: mismatched shapes or ``confidence`` outside [0, 1).
    """
    if suspect.shape != labels.shape or probabilities.shape[0] != labels.shape[0]:
        raise ValueError(f"labels {tuple(labels.shape)}, suspect {tuple(suspect.shape)} and "
                         f"probabilities {tuple(probabilities.shape)} must have N rows each")
    if not 0 <= confidence < 1:
        raise ValueError(f"confidence must be in [0, 1), got {confidence}")
    top, predicted = probabilities.max(dim=1)
    agrees = predicted == labels
    replace = suspect & ~agrees & (top > confidence)
    new = torch.where(replace, predicted, labels)
    return new, ~suspect | agrees | replace


def group_hypergradients(derivative: torch.Tensor, groups: Sequence | torch.Tensor,
                         names: Mapping | None = None) -> dict[str, float]:
    """:math:`\\partial L/\\partial w_g = \\sum_{i \\in g} \\partial L/\\partial \\alpha_i` by group.

    Args:
        derivative: :math:`\\partial L/\\partial \\alpha` (N,).
        groups: The group of each sample (N labels: a class, a data source, ...).
        names: Optional group -> name for the result keys (default: ``str(group)``).
    """
    groups = list(groups.tolist() if isinstance(groups, torch.Tensor) else groups)
    if len(groups) != len(derivative):
        raise ValueError(f"groups has {len(groups)} entries for {len(derivative)} samples")
    out: dict[str, float] = {}
    for group, value in zip(groups, derivative.tolist(), strict=True):
        key = (names or {}).get(group, str(group))
        out[key] = out.get(key, 0.0) + value
    return out
