"""scikit-learn's bundled 8x8 digits with fixed train/validation/test splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DigitsSplits:
    """Features in [0, 1] (N x 64, float32) and integer labels (N,) per split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_splits(seed: int = 0, val_fraction: float = 0.2,
                       test_fraction: float = 0.2) -> DigitsSplits:
    """Split the 1,797 digits by a seeded permutation.

    Args:
        seed: Seed of the permutation (the same seed gives the same splits).
        val_fraction: Share of the validation split.
        test_fraction: Share of the test split; the rest is training data.
    """
    from sklearn.datasets import load_digits

    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in (0, 1) and sum below 1")
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    n_val = int(round(val_fraction * len(x)))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return DigitsSplits(x[train], y[train], x[val], y[val], x[test], y[test])


def load_digits_standardized(n_train: int = 300, n_val: int = 500, seed: int = 0) -> DigitsSplits:
    """The hyperparameter-optimization benchmark split: ``n_train`` / ``n_val`` / the rest.

    A seeded permutation (seed 0 by default), then each pixel standardized with the
    training split's mean and standard deviation (constant pixels keep scale 1); float64.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.target))
    x, y = data.data[order].astype(np.float64), data.target[order].astype(np.int64)
    train, val = slice(0, n_train), slice(n_train, n_train + n_val)
    mean, std = x[train].mean(0), x[train].std(0)
    std[std == 0] = 1.0
    x = (x - mean) / std
    rest = slice(n_train + n_val, None)
    return DigitsSplits(x[train], y[train], x[val], y[val], x[rest], y[rest])


def cross_validation_fold(splits: DigitsSplits, fold: int, folds: int,
                          seed: int = 0) -> DigitsSplits:
    """Fold ``fold`` of ``folds``-fold cross-validation over the training and validation data.

    The pooled training + validation samples are permuted (``seed``) and cut into ``folds``
    near-equal parts; part ``fold`` validates, the others train. The test split is unchanged,
    so racing over folds (one instance per fold) never sees the test data.

    Raises:
        ValueError: ``folds`` < 2 or ``fold`` outside ``0 .. folds - 1``.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1}, got {fold}")
    x = np.concatenate([splits.x_train, splits.x_val])
    y = np.concatenate([splits.y_train, splits.y_val])
    parts = np.array_split(np.random.default_rng(seed).permutation(len(y)), folds)
    val = parts[fold]
    train = np.concatenate([p for i, p in enumerate(parts) if i != fold])
    return DigitsSplits(x[train], y[train], x[val], y[val], splits.x_test, splits.y_test)
