"""``autometa curate``: rank a dataset's samples by their dataset derivative, flag suspects.

Input: the built-in digits (pixels in [0, 1], 1,797 samples) or a ``.npz`` file with a feature
matrix (N x D, e.g. a network's penultimate activations) and integer labels (N,). A bias column
is appended. Output: ``curation.csv`` (index, label, derivative, suspect; with ``--flip``, also
whether the label was flipped) and ``derivative_hist.png``. With ``--flip`` a share of the
labels is flipped at random first (seeded), and the AUROC of the derivative for finding them is
printed: a check of the method on your own features.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class CurationReport:
    """What ``autometa curate`` computed and wrote."""

    error: float
    derivative: np.ndarray
    suspect: np.ndarray
    flipped: np.ndarray | None
    auroc: float | None
    files: list[str]


def load_arrays(dataset: str | None, npz: str | None, features_key: str = "features",
                labels_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Features and integer labels from the built-in dataset or a ``.npz`` file.

    Raises:
        ValueError: an unknown dataset, missing keys, bad shapes, NaN/inf, empty data, or
            labels that are not integers.
    """
    if (dataset is None) == (npz is None):
        raise ValueError("give exactly one of --dataset or --npz")
    if dataset is not None:
        if dataset != "digits":
            raise ValueError(f"unknown dataset {dataset!r}; built-in: digits")
        from sklearn.datasets import load_digits

        data = load_digits()
        return data.data / 16.0, data.target
    if not os.path.exists(npz):
        raise FileNotFoundError(f"{npz}: no such file")
    try:
        archive = np.load(npz, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:  # text, a pickle, a cut-off file
        raise ValueError(f"{npz}: not a NumPy .npz archive ({err})") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{npz}: a single array (.npy); expected an .npz archive of features "
                         "and labels (numpy.savez)")
    with archive:
        missing = [k for k in (features_key, labels_key) if k not in archive.files]
        if missing:
            raise ValueError(f"{npz}: no array {missing[0]!r} (arrays: {archive.files}); "
                             "choose them with --features-key/--labels-key")
        x, y = archive[features_key], archive[labels_key]
    where = f"{npz}: "
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{where}{features_key!r} must be a non-empty N x D matrix, got shape "
                         f"{x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{where}{labels_key!r} must be a vector of {len(x)} labels (one per "
                         f"row of {features_key!r}), got shape {y.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise ValueError(f"{where}{features_key!r} contains NaN, inf or non-numbers")
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise ValueError(f"{where}{labels_key!r} must hold integer class labels >= 0, got "
                         f"{y.dtype}")
    return x.astype(np.float64), y.astype(np.int64)


def flip_labels(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``share`` of the labels to another class, uniformly at random (seeded)."""
    if not 0 <= share < 1:
        raise ValueError(f"--flip must be in [0, 1), got {share}")
    rng = np.random.default_rng(seed)
    classes = int(labels.max()) + 1
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[rng.choice(len(labels), int(round(share * len(labels))), replace=False)] = True
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, classes, flipped.sum())) % classes
    return noisy, flipped


def curate(features: np.ndarray, labels: np.ndarray, output: str, ridge: float = 1.0,
           share: float = 0.1, flipped: np.ndarray | None = None) -> CurationReport:
    """Compute the derivative, flag suspects, write the CSV and the histogram."""
    import torch

    from autometa.data.curation import dataset_derivative, suspects

    x = torch.as_tensor(np.hstack([features, np.ones((len(features), 1))]), dtype=torch.float64)
    y = torch.as_tensor(labels)
    error, grad = dataset_derivative(x, y, ridge=ridge)
    flags = suspects(grad, share=share).numpy()
    derivative = grad.numpy()
    os.makedirs(output, exist_ok=True)
    table = os.path.join(output, "curation.csv")
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "label", "derivative", "suspect"] +
                        (["flipped"] if flipped is not None else []))
        for i in np.argsort(-derivative):
            writer.writerow([int(i), int(labels[i]), f"{derivative[i]:.6g}", int(flags[i])] +
                            ([int(flipped[i])] if flipped is not None else []))
    auroc = None
    if flipped is not None and 0 < flipped.sum() < len(flipped):
        from sklearn.metrics import roc_auc_score

        auroc = float(roc_auc_score(flipped, derivative))
    plot = os.path.join(output, "derivative_hist.png")
    _histogram(derivative, flags, plot, flipped)
    return CurationReport(error, derivative, flags, flipped, auroc, [table, plot])


def _histogram(derivative: np.ndarray, flags: np.ndarray, file: str,
               flipped: np.ndarray | None = None) -> None:
    """Kept and suspect samples; with ``flipped`` (``--flip``), the flipped ones outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(derivative.min(), derivative.max(), 60)
    ax.hist(derivative[~flags], bins=bins, label="kept")
    ax.hist(derivative[flags], bins=bins, label="suspect")
    if flipped is not None and flipped.any():
        ax.hist(derivative[flipped.astype(bool)], bins=bins, histtype="step", color="black",
                linewidth=1.5, label="flipped (--flip)")
    ax.set_xlabel("d LOO error / d sample weight")
    ax.set_ylabel("samples")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(file, dpi=100)
    plt.close(fig)
