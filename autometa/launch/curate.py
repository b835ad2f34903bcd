"""``autometa curate``: find a dataset's likely wrong labels, rank every sample, flag suspects.

Input: the built-in digits (pixels, 1,797 samples), a ``.npz`` file with a feature matrix
(N x D, e.g. a network's penultimate activations) and integer labels (N,), or a table (CSV, TSV
or Parquet) with a label column (any values: names or numbers) and feature columns (numbers;
text and boolean columns are one-hot encoded). The features are standardized and a bias
column is appended.

Methods: ``loo`` (the default) ranks by the exact leave-one-out predictions of a ridge
classifier, linear or RBF kernel, whichever has the lower leave-one-out error
(:mod:`autometa.data.label_issues`: cleanlab's out-of-sample probabilities without the K
trainings), and flags the samples predicted as another class; ``derivative`` ranks by the
dataset derivative of the leave-one-out error (DIVA) and flags the ``--share`` largest.

Output: ``curation.csv`` (most suspect first: index, label, score, predicted class, suspect;
with ``--flip`` also whether the label was flipped) and ``score_hist.png``. With ``--flip`` a
share of the labels is flipped at random first (seeded), and the AUROC of the score for
finding them is printed: a check of the method on your own data.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

METHODS = ("loo", "derivative")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


@dataclass
class CurationReport:
    """What ``autometa curate`` computed and wrote.

    Attributes:
        score: Per sample; larger = more suspect (1 - label quality for ``loo``, the
            derivative for ``derivative``).
        suspect: The flagged samples.
        predicted: The leave-one-out prediction (``loo``; None for ``derivative``).
        ridge: The ridge used (chosen by leave-one-out error unless given).
        error: The leave-one-out error at that ridge.
        model: The leave-one-out model, in words.
    """

    method: str
    score: np.ndarray
    suspect: np.ndarray
    predicted: np.ndarray | None
    ridge: float
    error: float
    flipped: np.ndarray | None
    auroc: float | None
    files: list[str]
    model: str = ""


@dataclass
class Table:
    """A table read for curation: features, integer labels and what they mean."""

    features: np.ndarray
    labels: np.ndarray
    classes: list
    feature_names: list[str]
    encoded: list[str]  # text or boolean columns that were one-hot encoded


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


def load_table(path: str, label_column: str | None,
               feature_columns: list[str] | None = None) -> Table:
    """Features and labels from a CSV, TSV or Parquet table.

    The label column may hold any values (class names or numbers; each distinct value is a
    class, in sorted order). Feature columns (default: every other column) must be numbers,
    booleans or text (text and booleans are one-hot encoded), with no missing values.

    Raises:
        ValueError: an unreadable or empty table, a missing column (the columns are named),
            missing values (the column and how many), a single class.
    """
    import pandas as pd

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: a table must be {', '.join(TABLE_SUFFIXES)}, got "
                         f"{suffix or 'no suffix'!r}")
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise ValueError(f"{path}: not a readable {suffix[1:]} table ({err})") from err
    except ImportError as err:  # no Parquet engine
        raise ValueError(f"{path}: reading Parquet needs pyarrow ({err})") from err
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if label_column is None:
        raise ValueError(f"{path}: name the label column with --label-column (columns: "
                         f"{_listed(columns)})")
    if label_column not in columns:
        raise ValueError(f"{path}: no column {label_column!r} (columns: {_listed(columns)})")
    names = [c for c in columns if c != label_column] if feature_columns is None \
        else list(feature_columns)
    unknown = [c for c in names if c not in columns]
    if unknown:
        raise ValueError(f"{path}: no column {unknown[0]!r} (columns: {_listed(columns)})")
    if label_column in names:
        raise ValueError(f"{path}: the label column {label_column!r} is also a feature column")
    if not names:
        raise ValueError(f"{path}: no feature columns besides {label_column!r}")
    if len(frame) < 3:
        raise ValueError(f"{path}: {len(frame)} rows; curation needs at least 3")
    for column in [label_column, *names]:
        missing = int(frame[column].isna().sum())
        if missing:
            raise ValueError(f"{path}: column {column!r} has {missing} missing value(s); fill "
                             "or drop them first")
    classes, labels = np.unique(frame[label_column].to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{path}: column {label_column!r} holds one class ({classes[0]!r}); "
                         "curation needs at least two")
    numeric, encoded = [], []
    for column in names:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            encoded.append(column)
            numeric.append(pd.get_dummies(series.astype(str), prefix=column, dtype=float))
        else:
            numeric.append(series.astype(float).to_frame())
    features = pd.concat(numeric, axis=1)
    if not np.isfinite(features.to_numpy()).all():
        bad = [c for c in features.columns if not np.isfinite(features[c].to_numpy()).all()]
        raise ValueError(f"{path}: column {bad[0]!r} holds inf")
    return Table(features.to_numpy(dtype=np.float64), labels.astype(np.int64),
                 [c.item() if hasattr(c, "item") else c for c in classes],
                 [str(c) for c in features.columns], encoded)


def _listed(columns: list[str], most: int = 12) -> str:
    shown = ", ".join(columns[:most])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > most else "")


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


def curate(features: np.ndarray, labels: np.ndarray, output: str, method: str = "loo",
           ridge: float | str = "auto", share: float | None = None,
           flipped: np.ndarray | None = None, classes: list | None = None) -> CurationReport:
    """Score every sample, flag suspects, write ``curation.csv`` and ``score_hist.png``.

    ``share`` flags that share of the samples, most suspect first (the default: those
    predicted as another class for ``loo``, 0.1 for ``derivative``). ``classes`` names the
    integer labels in the CSV.
    """
    from autometa.data.label_issues import loo_pred_probs, standardize

    if method not in METHODS:
        raise ValueError(f"--method must be one of {METHODS}, got {method!r}")
    if share is not None and not 0 < share <= 1:
        raise ValueError(f"--share must be in (0, 1], got {share}")
    # (the derivative is that of the linear model's leave-one-out error)
    loo = loo_pred_probs(features, labels, ridge=ridge,
                         model="auto" if method == "loo" else "linear")
    predicted = None
    if method == "loo":
        from autometa.data.label_issues import find_label_issues, label_quality_scores

        score = 1.0 - label_quality_scores(labels, loo.pred_probs, method="normalized_margin")
        flags = find_label_issues(labels, loo.pred_probs) if share is None else \
            _top(score, share)
        predicted = loo.pred_probs.argmax(axis=1)
    else:
        import torch

        from autometa.data.curation import dataset_derivative, suspects

        x = torch.as_tensor(standardize(features))
        _, grad = dataset_derivative(x, torch.as_tensor(labels), ridge=loo.ridge)
        score = grad.numpy()
        flags = suspects(grad, share=0.1 if share is None else share).numpy()
    name = (lambda k: classes[int(k)]) if classes is not None else int  # noqa: E731
    os.makedirs(output, exist_ok=True)
    table = os.path.join(output, "curation.csv")
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "label", "score", "predicted", "suspect"] +
                        (["flipped"] if flipped is not None else []))
        for i in np.argsort(-score, kind="stable"):
            writer.writerow([int(i), name(labels[i]), f"{score[i]:.6g}",
                             name(predicted[i]) if predicted is not None else "",
                             int(flags[i])] + ([int(flipped[i])] if flipped is not None else []))
    auroc = None
    if flipped is not None and 0 < flipped.sum() < len(flipped):
        from sklearn.metrics import roc_auc_score

        auroc = float(roc_auc_score(flipped, score))
    plot = os.path.join(output, "score_hist.png")
    _histogram(score, flags, plot, flipped, "1 - label quality (normalized margin)"
               if method == "loo" else "d LOO error / d sample weight")
    return CurationReport(method, score, flags, predicted, loo.ridge, loo.loo_error, flipped, auroc,
                          [table, plot], loo.describe())


def _top(score: np.ndarray, share: float) -> np.ndarray:
    """The ``share`` of samples with the largest score (at least one)."""
    count = max(1, int(round(share * len(score))))
    mask = np.zeros(len(score), dtype=bool)
    mask[np.argsort(-score, kind="stable")[:count]] = True
    return mask


def _histogram(derivative: np.ndarray, flags: np.ndarray, file: str,
               flipped: np.ndarray | None = None, label: str = "score") -> None:
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
    ax.set_xlabel(label)
    ax.set_ylabel("samples")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(file, dpi=100)
    plt.close(fig)
