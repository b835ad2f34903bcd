r"""Closed-form leave-one-out error of weighted ridge regression, and its dataset derivative.

Features :math:`\Phi \in \mathbb{R}^{N \times D}`, targets :math:`Y \in \mathbb{R}^{N \times C}`,
sample weights :math:`\alpha \in [0, \infty)^N`, ridge :math:`\lambda > 0`. The model trained on
:math:`\sum_i \alpha_i \|y_i - W^\top \phi_i\|^2 + \lambda \|W\|^2` is
:math:`W = K^{-1} \Phi^\top A Y` with :math:`A = \mathrm{diag}(\alpha)` and
:math:`K = \Phi^\top A \Phi + \lambda I`. Its predictions are :math:`\hat Y = H Y` with the hat
matrix :math:`H = \Phi K^{-1} \Phi^\top A`, and removing sample i (a rank-one downdate of K,
Sherman-Morrison) gives the leave-one-out residual

.. math:: y_i - f^{(-i)}(\phi_i) = \frac{y_i - \hat y_i}{1 - H_{ii}}, \qquad
          H_{ii} = \alpha_i\, \phi_i^\top K^{-1} \phi_i,

so :math:`L_{LOO}(\alpha) = \frac1N \sum_i \|y_i - \hat y_i\|^2 / (1 - H_{ii})^2` needs one
factorization, not N retrainings. Two equal forms:

* primal (:math:`D \le N`): Cholesky of the D x D matrix K (symmetric positive definite);
* dual (:math:`N < D`): the model lies in the span of the samples (the representer theorem),
  and ridge is invariant to rotations of the features, so with the thin QR factorization
  :math:`\Phi^\top = Q R` the problem is the primal one on the N features :math:`R^\top`
  (N x N). It never forms the Gram matrix :math:`\Phi \Phi^\top`, whose condition number is
  the square of :math:`\Phi`'s (the push-through form
  :math:`H = G (\lambda I + A G)^{-1} A` lost every digit on badly scaled features).

Both are smooth in :math:`\alpha` (also at :math:`\alpha_i = 0`), so the dataset derivative
:math:`\partial L_{LOO} / \partial \alpha` is autograd through them (DIVA, Dukler et al. 2023).
Features are centred by nothing and the bias is not special: append a column of ones to
:math:`\Phi` for one. Pure torch; no Ray.
"""

from __future__ import annotations

import torch

FORMS = ("auto", "primal", "dual")


def _check(features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
           ridge: float) -> None:
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"features must be a non-empty N x D matrix, got shape "
                         f"{tuple(features.shape)}")
    n = features.shape[0]
    if targets.ndim != 2 or targets.shape[0] != n:
        raise ValueError(f"targets must be N x C with N = {n} (the features' rows), got shape "
                         f"{tuple(targets.shape)}")
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {tuple(weights.shape)}")
    for name, t in (("features", features), ("targets", targets), ("weights", weights)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contain NaN or inf")
    if not ridge > 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    if (weights < 0).any():
        raise ValueError("weights must be >= 0")


def weighted_ridge(features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                   ridge: float) -> torch.Tensor:
    r""":math:`W = (\Phi^\top A \Phi + \lambda I)^{-1} \Phi^\top A Y` (D x C), the weighted
    ridge model itself (differentiable in the weights)."""
    eye = torch.eye(features.shape[1], dtype=features.dtype, device=features.device)
    return torch.linalg.solve(features.T @ (weights[:, None] * features) + ridge * eye,
                              features.T @ (weights[:, None] * targets))


def _residuals_primal(features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                      ridge: float) -> torch.Tensor:
    d = features.shape[1]
    eye = torch.eye(d, dtype=features.dtype, device=features.device)
    k = features.T @ (weights[:, None] * features) + ridge * eye
    chol = torch.linalg.cholesky(k)
    solved = torch.cholesky_solve(features.T, chol)                      # K^{-1} Phi^T (D x N)
    h = weights * (features * solved.T).sum(dim=1)                       # alpha_i phi_i K^-1 phi_i
    predictions = features @ (solved @ (weights[:, None] * targets))     # Phi K^-1 Phi^T A Y
    return (targets - predictions) / (1 - h)[:, None]


def _residuals_dual(features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                    ridge: float) -> torch.Tensor:
    # Phi^T = Q R (thin QR): ridge is invariant to rotating the features within their span, and
    # W lies in it, so the problem is the primal one on the N features R^T (N x N).
    _, r = torch.linalg.qr(features.T)
    return _residuals_primal(r.T, targets, weights, ridge)


def loo_residuals(features: torch.Tensor, targets: torch.Tensor,
                  weights: torch.Tensor | None = None, ridge: float = 1e-3,
                  form: str = "auto") -> torch.Tensor:
    """:math:`y_i - f^{(-i)}(\\phi_i)` for every sample (N x C); see the module docstring."""
    weights = torch.ones(features.shape[0], dtype=features.dtype, device=features.device) \
        if weights is None else weights
    _check(features, targets, weights.detach(), ridge)
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if form == "auto":
        form = "primal" if features.shape[1] <= features.shape[0] else "dual"
    solve = _residuals_primal if form == "primal" else _residuals_dual
    return solve(features, targets, weights, ridge)


def loo_error(features: torch.Tensor, targets: torch.Tensor,
              weights: torch.Tensor | None = None, ridge: float = 1e-3,
              form: str = "auto") -> torch.Tensor:
    """:math:`L_{LOO}(\\alpha) = \\frac1N \\sum_i \\|y_i - f^{(-i)}(\\phi_i)\\|^2` (a scalar tensor,
    differentiable with respect to ``weights``)."""
    return (loo_residuals(features, targets, weights, ridge, form) ** 2).sum(dim=1).mean()


def loo_gradient(features: torch.Tensor, targets: torch.Tensor,
                 weights: torch.Tensor | None = None, ridge: float = 1e-3,
                 form: str = "auto") -> tuple[float, torch.Tensor]:
    """The leave-one-out error and the dataset derivative :math:`\\partial L_{LOO}/\\partial \\alpha`.

    A negative derivative for sample i means that weighting it up lowers the leave-one-out
    error (a helpful sample); a large positive one marks a harmful sample (e.g. a wrong label).
    """
    weights = torch.ones(features.shape[0], dtype=features.dtype, device=features.device) \
        if weights is None else weights
    alpha = weights.detach().clone().requires_grad_(True)
    error = loo_error(features, targets, alpha, ridge, form)
    (grad,) = torch.autograd.grad(error, alpha)
    return float(error.detach()), grad


def one_hot(labels: torch.Tensor, classes: int | None = None,
            dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Integer labels (N,) as one-hot targets (N x C)."""
    classes = int(labels.max()) + 1 if classes is None else classes
    return torch.nn.functional.one_hot(labels.long(), classes).to(dtype)
