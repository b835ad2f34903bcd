r"""Wrong labels found from exact leave-one-out predictions, with cleanlab's calling conventions.

cleanlab ranks samples by *out-of-sample* predicted probabilities, which a user makes by
training K models on K folds. For a ridge classifier on a feature matrix (a table's columns, a
network's penultimate activations) the N-fold version is exact and costs one factorization:
the leave-one-out prediction of sample i is

.. math:: f^{(-i)}(\phi_i) = y_i - \frac{y_i - \hat y_i}{1 - H_{ii}}

(:func:`autometa.data.loo.loo_residuals`, one-hot targets :math:`y_i`). :func:`loo_pred_probs`
turns those scores into probabilities (clipped at 0, each row normalized; a row with no
positive score is uniform) after standardizing the features and choosing the ridge
:math:`\lambda` that minimizes the leave-one-out error on a log grid (labels are only read,
never used to pick anything else). Then, as in cleanlab:

* :func:`label_quality_scores`: one score in [0, 1] per sample, lower = more likely wrong:
  ``self_confidence`` :math:`p_{i, y_i}`, or ``normalized_margin``
  :math:`(p_{i, y_i} - \max_{c \ne y_i} p_{i c} + 1) / 2`;
* :func:`find_label_issues`: a boolean mask of the samples predicted as another class
  (``predicted_neq_given``, the default), or only of those confidently so
  (``confident_learning``, Northcutt et al. 2021: class j's threshold :math:`t_j` is the
  mean :math:`p_{kj}` over the samples labelled j; sample i is flagged when the most probable
  class among those with :math:`p_{ij} \ge t_j` is not its label); or their indices ranked
  by a score.

Both take ``pred_probs`` (from any model, out of sample: cleanlab's inputs, with the same
results as cleanlab for the same method) or ``features`` (the leave-one-out probabilities
above). The measurements behind the defaults, against cleanlab with 5-fold probabilities: in
benchmarks/README.md (``benchmarks/curation_cleanlab.py``). NumPy in and out; torch inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("self_confidence", "normalized_margin")
FILTERS = ("confident_learning", "predicted_neq_given")
MODELS = ("auto", "linear", "rbf")
# ridge candidates for "auto": 1e-4 .. 1e4 in half decades
RIDGE_GRID = tuple(10.0 ** (k / 2) for k in range(-8, 9))
# RBF bandwidths gamma = m / (2 D) on D standardized columns (m = 1: the squared distance of
# two independent samples is about 2 D)
GAMMA_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
EXACT_KERNEL_LIMIT = 500    # samples up to which the RBF model is the exact kernel ridge
LANDMARKS = 300             # Nystrom landmarks beyond that (as good as exact on digits)
RBF_LIMIT = 100_000         # samples beyond which "auto" tries the linear model only


@dataclass(frozen=True)
class LooPredictions:
    """What :func:`loo_pred_probs` computed.

    Attributes:
        pred_probs: (N, C) out-of-sample class probabilities (rows sum to 1).
        scores: (N, C) the raw leave-one-out ridge outputs they come from.
        model: ``linear`` or ``rbf``.
        gamma: The RBF bandwidth (None for ``linear``).
        ridge: The ridge used.
        loo_error: Its leave-one-out error (mean squared error on the one-hot labels).
        errors: (model, gamma, ridge) -> leave-one-out error, for every candidate tried.
        landmarks: Nystrom landmarks of the RBF model (None: the exact kernel).
    """

    pred_probs: np.ndarray
    scores: np.ndarray
    model: str
    gamma: float | None
    ridge: float
    loo_error: float
    errors: dict[tuple, float]
    landmarks: int | None = None

    def describe(self) -> str:
        """One line: the model chosen and its leave-one-out error."""
        kind = "linear ridge" if self.model == "linear" else (
            f"RBF kernel ridge (gamma {self.gamma:.3g}"
            + (f", {self.landmarks} Nystrom landmarks)" if self.landmarks else ")"))
        return f"{kind}, ridge {self.ridge:.3g}: leave-one-out error {self.loo_error:.4f}"


def standardize(features: np.ndarray) -> np.ndarray:
    """Columns to zero mean and unit variance (constant columns to 0), plus a column of ones."""
    return np.hstack([_zscore(features), np.ones((len(features), 1))])


def _zscore(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    scale = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(scale > 0, scale, 1.0)


def spectral_loo_residuals(basis: np.ndarray, spectrum: np.ndarray, targets: np.ndarray,
                           ridge: float) -> np.ndarray:
    r"""Leave-one-out residuals of ridge regression from a spectral form of its hat matrix.

    With :math:`H = U\,\mathrm{diag}(s / (s + \lambda))\,U^\top` (``basis`` U, N x r, orthonormal
    columns; ``spectrum`` s): :math:`\Phi = U S V^\top` gives the linear model (:math:`s =
    S^2`), :math:`K = U \Lambda U^\top` the kernel one (:math:`s = \Lambda`). Then
    :math:`y_i - f^{(-i)}(x_i) = (y_i - (HY)_i) / (1 - H_{ii})` for every :math:`\lambda` at
    the cost of two products.
    """
    shrink = spectrum / (spectrum + ridge)
    leverage = (basis ** 2) @ shrink                                   # H_ii
    fitted = basis @ (shrink[:, None] * (basis.T @ targets))           # H Y
    return (targets - fitted) / (1.0 - leverage)[:, None]


def _linear_spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, sv, _ = np.linalg.svd(standardize(x), full_matrices=False)
    return u, sv ** 2


def _rbf_spectrum(z: np.ndarray, gamma: float, landmarks: int | None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""The spectrum of :math:`K = \exp(-\gamma \|z_i - z_j\|^2) + 1` (the 1: a bias), exactly
    or through ``landmarks`` Nystrom landmarks (drawn without looking at labels)."""
    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2.0 * a @ b.T
        return np.exp(-gamma * np.maximum(d2, 0.0)) + 1.0

    if landmarks is None:
        values, vectors = np.linalg.eigh(kernel(z, z))
        return vectors, np.clip(values, 0.0, None)
    rng = np.random.default_rng(seed)
    centres = z[rng.choice(len(z), size=landmarks, replace=False)]
    values, vectors = np.linalg.eigh(kernel(centres, centres))
    keep = values > values.max() * 1e-10
    features = kernel(z, centres) @ (vectors[:, keep] / np.sqrt(values[keep]))  # K_nm V L^-1/2
    u, sv, _ = np.linalg.svd(features, full_matrices=False)
    return u, sv ** 2


def loo_pred_probs(features: Any, labels: Any, *, model: str = "auto",
                   ridge: float | str = "auto", classes: int | None = None,
                   landmarks: int | None | str = "auto") -> LooPredictions:
    r"""Exact leave-one-out class probabilities of a ridge classifier on ``features``.

    The columns are standardized; the classifier regresses the one-hot labels, ``linear``
    (on the columns and a bias) or ``rbf`` (kernel ridge, :math:`\exp(-\gamma\|z_i -
    z_j\|^2) + 1`); ``auto`` picks, of both models, every bandwidth of
    :data:`GAMMA_MULTIPLIERS` and every ridge of :data:`RIDGE_GRID`, the candidate of lowest
    leave-one-out error (labels pick nothing else). Every prediction is that of the model
    refitted without the sample, in closed form (:func:`spectral_loo_residuals`).

    Args:
        features: (N, D) numbers, finite.
        labels: (N,) integer class labels in ``[0, classes)``.
        model: ``auto``, ``linear`` or ``rbf`` (``auto`` tries ``rbf`` up to
            :data:`RBF_LIMIT` samples).
        ridge: The ridge :math:`\lambda > 0`, or ``"auto"``.
        classes: Number of classes (default: the largest label + 1).
        landmarks: Nystrom landmarks of the RBF model: ``"auto"`` (the exact kernel up to
            :data:`EXACT_KERNEL_LIMIT` samples, else :data:`LANDMARKS`), None (exact) or a
            number (the leave-one-out predictions are then exact for the model on those
            landmarks' features).

    Raises:
        ValueError: bad shapes, non-finite features, labels that are not class indices, an
            unknown model, a ridge that is not a positive number or ``"auto"``.
    """
    x = np.asarray(features)
    y = _labels(labels, len(x) if x.ndim == 2 else None)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be a non-empty N x D matrix, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise ValueError("features must be finite numbers (no NaN, inf or text)")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if isinstance(ridge, str):
        if ridge != "auto":
            raise ValueError(f"ridge must be a positive number or 'auto', got {ridge!r}")
        ridges = RIDGE_GRID
    elif isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge > 0:
        ridges = (float(ridge),)
    else:
        raise ValueError(f"ridge must be a positive number or 'auto', got {ridge!r}")
    n = len(x)
    if landmarks == "auto":
        landmarks = None if n <= EXACT_KERNEL_LIMIT else LANDMARKS
    if landmarks is not None and not (isinstance(landmarks, int) and 0 < landmarks <= n):
        raise ValueError(f"landmarks must be 'auto', None or 1..{n}, got {landmarks!r}")
    targets = np.eye(_classes(y, classes))[y]
    x = x.astype(np.float64)
    candidates = []  # (model, gamma, basis, spectrum)
    if model in ("auto", "linear"):
        candidates.append(("linear", None, *_linear_spectrum(x)))
    if model == "rbf" or (model == "auto" and n <= RBF_LIMIT):
        z = _zscore(x)
        width = max(1, int((z.std(axis=0) > 0).sum()))
        for m in GAMMA_MULTIPLIERS:
            gamma = m / (2.0 * width)
            candidates.append(("rbf", gamma, *_rbf_spectrum(z, gamma, landmarks)))
    errors, best = {}, None
    for kind, gamma, basis, spectrum in candidates:
        for r in ridges:
            residuals = spectral_loo_residuals(basis, spectrum, targets, r)
            error = float((residuals ** 2).sum(axis=1).mean())
            if not math.isfinite(error):
                continue  # (a leverage of 1: this ridge is too small for these data)
            errors[(kind, gamma, r)] = error
            if best is None or error < best[0]:
                best = (error, kind, gamma, r, residuals)
    if best is None:
        raise ValueError("no candidate model has a finite leave-one-out error (give a larger "
                         "ridge)")
    error, kind, gamma, r, residuals = best
    scores = targets - residuals                             # f^{(-i)}(x_i)
    return LooPredictions(_probabilities(scores), scores, kind, gamma, r, error, errors,
                          landmarks if kind == "rbf" else None)


def _probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores clipped at 0, each row normalized to sum 1 (uniform where none is positive)."""
    clipped = np.clip(scores, 0.0, None)
    total = clipped.sum(axis=1, keepdims=True)
    uniform = np.full_like(clipped, 1.0 / clipped.shape[1])
    return np.where(total > 0, clipped / np.where(total > 0, total, 1.0), uniform)


def label_quality_scores(labels: Any, pred_probs: Any = None, *, features: Any = None,
                         method: str | None = None, ridge: float | str = "auto") -> np.ndarray:
    """One score in [0, 1] per sample; lower means more likely mislabelled.

    Give ``pred_probs`` ((N, C) out-of-sample probabilities of any model: what cleanlab's
    ``get_label_quality_scores`` takes, with its results) or ``features`` (:func:`loo_pred_probs`
    makes them). ``method``: ``self_confidence`` or ``normalized_margin``; None is cleanlab's
    default, ``self_confidence``, for ``pred_probs`` and ``normalized_margin`` for ``features``
    (the better of the two on leave-one-out probabilities: benchmarks/README.md).
    """
    probs, y = _inputs(labels, pred_probs, features, ridge)
    method = method or ("self_confidence" if features is None else "normalized_margin")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    rows = np.arange(len(y))
    own = probs[rows, y]
    if method == "self_confidence":
        return own
    others = probs.copy()
    others[rows, y] = -np.inf
    return (own - others.max(axis=1) + 1.0) / 2.0


def find_label_issues(labels: Any, pred_probs: Any = None, *, features: Any = None,
                      return_indices_ranked_by: str | None = None,
                      filter_by: str = "predicted_neq_given",
                      ridge: float | str = "auto") -> np.ndarray:
    """The samples whose out-of-sample prediction is another class.

    Inputs as :func:`label_quality_scores`; ``filter_by`` one of :data:`FILTERS` (see the
    module doc): ``predicted_neq_given`` (the default) flags more, and removing its flags gave
    the higher test accuracy; ``confident_learning`` flags fewer, more precisely
    (benchmarks/README.md). Returns a boolean mask (N,), or with ``return_indices_ranked_by`` (a
    :data:`METHODS` name) the flagged samples' indices, most likely wrong first: cleanlab's
    ``find_label_issues`` conventions. cleanlab's default filter (``prune_by_noise_rate``) is
    its own: to use it on these probabilities, pass ``loo_pred_probs(features, labels)
    .pred_probs`` to cleanlab.
    """
    if filter_by not in FILTERS:
        raise ValueError(f"filter_by must be one of {FILTERS} (cleanlab's own filters: pass "
                         f"loo_pred_probs(...).pred_probs to cleanlab), got {filter_by!r}")
    if return_indices_ranked_by is not None and return_indices_ranked_by not in METHODS:
        raise ValueError(f"return_indices_ranked_by must be None or one of {METHODS}, got "
                         f"{return_indices_ranked_by!r}")
    probs, y = _inputs(labels, pred_probs, features, ridge)
    own = probs[np.arange(len(y)), y]
    if filter_by == "predicted_neq_given":
        mask = probs.max(axis=1) > own  # ties go to the label: a uniform row flags nothing
    else:
        mask = confident_class(probs, y) != y
    if return_indices_ranked_by is None:
        return mask
    scores = label_quality_scores(y, probs, method=return_indices_ranked_by)
    flagged = np.flatnonzero(mask)
    return flagged[np.argsort(scores[flagged], kind="stable")]


def confident_class(pred_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    r"""Per sample, the most probable class among those it reaches the threshold of
    (:math:`p_{ij} \ge t_j`, :math:`t_j` = mean :math:`p_{kj}` over the samples labelled j; a
    class nobody has as label has no threshold); its label where it reaches none."""
    classes = pred_probs.shape[1]
    counts = np.bincount(labels, minlength=classes)
    sums = np.zeros(classes)
    np.add.at(sums, labels, pred_probs[np.arange(len(labels)), labels])
    thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
    above = np.where(pred_probs >= thresholds, pred_probs, -np.inf)
    best = above.argmax(axis=1)
    rows = np.arange(len(labels))
    # ties with the label go to the label; no class above its threshold: the label
    keep = np.isneginf(above[rows, best]) | (above[rows, labels] >= above[rows, best])
    return np.where(keep, labels, best)


def _inputs(labels: Any, pred_probs: Any, features: Any,
            ridge: float | str) -> tuple[np.ndarray, np.ndarray]:
    if (pred_probs is None) == (features is None):
        raise ValueError("give exactly one of pred_probs (out-of-sample probabilities of any "
                         "model) or features (leave-one-out probabilities are computed)")
    if features is not None:
        y = _labels(labels, None)
        return loo_pred_probs(features, y, ridge=ridge).pred_probs, y
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] < 2:
        raise ValueError(f"pred_probs must be N x C with C >= 2, got shape {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("pred_probs must be finite and >= 0")
    y = _labels(labels, len(probs))
    if y.max() >= probs.shape[1]:
        raise ValueError(f"label {int(y.max())} has no column in pred_probs ({probs.shape[1]} "
                         f"classes)")
    return probs, y


def _labels(labels: Any, n: int | None) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels must be a non-empty vector, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} samples")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all()
                and (y == np.round(y)).all()):
            raise ValueError(f"labels must be integer class indices, got {y.dtype} values")
    if (y < 0).any():
        raise ValueError("labels must be class indices >= 0")
    return y.astype(np.int64)


def _classes(y: np.ndarray, classes: int | None) -> int:
    top = int(y.max()) + 1
    if classes is None:
        return max(top, 2)
    if classes < top:
        raise ValueError(f"classes={classes}, but a label is {top - 1}")
    return int(classes)
