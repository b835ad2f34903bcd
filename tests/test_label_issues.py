"""Wrong-label detection from exact leave-one-out predictions, beside cleanlab (real cleanlab)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn import datasets

from autometa.data.label_issues import (
    RIDGE_GRID,
    find_label_issues,
    label_quality_scores,
    loo_pred_probs,
    standardize,
)
from autometa.launch.cli import main
from autometa.launch.curate import flip_labels


def _blobs(n=40, d=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    features = rng.normal(size=(classes, d))[labels] * 2 + rng.normal(size=(n, d)) * 3 + 5
    return features, labels


def test_linear_loo_scores_are_the_predictions_of_ridge_retrained_without_each_sample():
    features, labels = _blobs()
    ridge = 0.7
    got = loo_pred_probs(features, labels, model="linear", ridge=ridge)
    assert got.model == "linear" and got.gamma is None and got.ridge == ridge
    phi, targets = standardize(features), np.eye(3)[labels]
    for i in range(len(labels)):  # brute force: N ridge fits
        keep = np.arange(len(labels)) != i
        a, b = phi[keep], targets[keep]
        w = np.linalg.solve(a.T @ a + ridge * np.eye(phi.shape[1]), a.T @ b)
        np.testing.assert_allclose(got.scores[i], phi[i] @ w, rtol=0, atol=1e-10)
    probs = got.pred_probs
    assert np.allclose(probs.sum(axis=1), 1) and (probs >= 0).all()
    positive = np.clip(got.scores, 0, None)
    rows = positive.sum(axis=1) > 0
    np.testing.assert_allclose(probs[rows], positive[rows] / positive[rows].sum(1, keepdims=True))
    assert got.loo_error == pytest.approx(((targets - got.scores) ** 2).sum(axis=1).mean())


def test_rbf_loo_scores_are_the_predictions_of_kernel_ridge_retrained_without_each_sample():
    features, labels = _blobs(n=30, seed=3)
    got = loo_pred_probs(features, labels, model="rbf", ridge=0.5)
    assert got.model == "rbf" and got.landmarks is None
    z = (features - features.mean(0)) / features.std(0)
    d2 = ((z[:, None] - z[None]) ** 2).sum(-1)
    kernel, targets = np.exp(-got.gamma * d2) + 1.0, np.eye(3)[labels]
    for i in range(len(labels)):
        keep = np.arange(len(labels)) != i
        alpha = np.linalg.solve(kernel[np.ix_(keep, keep)] + 0.5 * np.eye(keep.sum()),
                                targets[keep])
        np.testing.assert_allclose(got.scores[i], kernel[i, keep] @ alpha, rtol=0, atol=1e-9)
    # Nystrom features on every sample as a landmark span the exact kernel
    every = loo_pred_probs(features, labels, model="rbf", ridge=0.5, landmarks=30)
    assert every.landmarks == 30
    np.testing.assert_allclose(every.scores, got.scores, rtol=0, atol=1e-7)
    fewer = loo_pred_probs(features, labels, model="rbf", ridge=0.5, landmarks=8)
    assert np.abs(fewer.scores - got.scores).max() > 1e-3  # an approximation: not the same


def test_auto_picks_the_model_bandwidth_and_ridge_of_lowest_leave_one_out_error():
    features, labels = _blobs(seed=1)
    got = loo_pred_probs(features, labels)
    assert {r for _, _, r in got.errors} == set(RIDGE_GRID)
    assert {m for m, _, _ in got.errors} == {"linear", "rbf"}
    assert len({g for m, g, _ in got.errors if m == "rbf"}) == 6
    best = min(got.errors, key=got.errors.get)
    assert (got.model, got.gamma, got.ridge) == best
    assert got.loo_error == pytest.approx(got.errors[best])
    assert len(set(got.errors.values())) > 1  # the choice is a real one
    fixed = loo_pred_probs(features, labels, model=got.model, ridge=got.ridge)
    np.testing.assert_allclose(fixed.pred_probs, got.pred_probs, atol=1e-12)
    # a 3-class problem a linear ridge classifier cannot separate (the middle class is
    # masked): the RBF model wins, and finds the flipped labels the linear one misses
    from sklearn.metrics import roc_auc_score

    iris = datasets.load_iris()
    noisy, flipped = flip_labels(iris.target, 0.2, seed=0)
    auto = loo_pred_probs(iris.data, noisy)
    linear = loo_pred_probs(iris.data, noisy, model="linear")
    assert auto.model == "rbf" and auto.loo_error < linear.loo_error
    auroc = {k: roc_auc_score(flipped, -label_quality_scores(noisy, p.pred_probs,
                                                             method="normalized_margin"))
             for k, p in (("auto", auto), ("linear", linear))}
    assert auroc["auto"] > auroc["linear"] + 0.02, auroc


def test_scores_and_issues_are_cleanlabs_on_the_same_pred_probs():
    from cleanlab.filter import find_label_issues as cl_find
    from cleanlab.rank import get_label_quality_scores

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 0.7, size=200)
    labels = rng.integers(0, 4, size=200)
    for method in ("self_confidence", "normalized_margin"):
        np.testing.assert_allclose(label_quality_scores(labels, probs, method=method),
                                   get_label_quality_scores(labels, probs, method=method))
    np.testing.assert_allclose(label_quality_scores(labels, probs),  # the same default
                               get_label_quality_scores(labels, probs))
    mask = find_label_issues(labels, probs)
    assert mask.dtype == bool and mask.tolist() == (probs.argmax(1) != labels).tolist()
    np.testing.assert_array_equal(mask, cl_find(labels, probs, filter_by="predicted_neq_given"))
    # confident learning: cleanlab's filter of that name (an implementation of our own;
    # cleanlab also keeps at least one sample of each class)
    confident = find_label_issues(labels, probs, filter_by="confident_learning")
    theirs = cl_find(labels, probs, filter_by="confident_learning")
    assert (confident != theirs).sum() <= 2 and confident.sum() > 0
    wine = datasets.load_wine()
    noisy, _ = flip_labels(wine.target, 0.2, seed=0)
    loo = loo_pred_probs(wine.data, noisy).pred_probs  # real probabilities, where they differ
    confident = find_label_issues(noisy, loo, filter_by="confident_learning")
    assert (confident != cl_find(noisy, loo, filter_by="confident_learning")).sum() <= 1
    assert 0 < confident.sum() < find_label_issues(noisy, loo).sum()
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    scores = get_label_quality_scores(labels, probs)
    assert sorted(ranked) == np.flatnonzero(mask).tolist()
    assert np.all(np.diff(scores[ranked]) >= 0)  # most likely wrong first
    # cleanlab's own filter takes the leave-one-out probabilities as they are
    features, y = _blobs(n=90, seed=2)
    y = y.copy()
    y[[3, 10, 50]] = (y[[3, 10, 50]] + 1) % 3
    assert cl_find(y, loo_pred_probs(features, y).pred_probs).shape == (90,)


@pytest.mark.parametrize("name", ["breast_cancer", "wine"])
def test_on_tables_the_loo_ranking_beats_the_training_loss_and_cleanlab(name):
    """20 % of the labels flipped: leave-one-out ridge on the standardized columns against the
    in-sample loss of logistic regression and cleanlab's scores from its 5-fold probabilities
    (benchmarks/curation_cleanlab.py measures this over seeds, rates and datasets)."""
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.preprocessing import StandardScaler

    data = getattr(datasets, f"load_{name}")()
    noisy, flipped = flip_labels(data.target, 0.2, seed=0)
    ours = roc_auc_score(flipped, -label_quality_scores(noisy, features=data.data))
    x = StandardScaler().fit_transform(data.data)
    model = LogisticRegression(max_iter=2000)
    fitted = model.fit(x, noisy).predict_proba(x)
    loss = roc_auc_score(flipped, -np.log(fitted[np.arange(len(noisy)), noisy]))
    oof = cross_val_predict(model, x, noisy, cv=5, method="predict_proba")
    cleanlab = roc_auc_score(flipped, -get_label_quality_scores(noisy, oof))
    assert ours > max(loss, cleanlab), (ours, loss, cleanlab)
    flags = find_label_issues(noisy, features=data.data)
    assert (flags & flipped).sum() >= 0.8 * flipped.sum()  # most flips found ...
    assert (flags & flipped).sum() >= 0.75 * flags.sum()   # ... and most flags are flips


@pytest.mark.parametrize("call, match", [
    (lambda: label_quality_scores([0, 1]), "exactly one of pred_probs"),
    (lambda: label_quality_scores([0, 1], [[0.5, 0.5]] * 2, features=np.ones((2, 2))),
     "exactly one of pred_probs"),
    (lambda: label_quality_scores([0, 2], [[0.5, 0.5]] * 2), "label 2 has no column"),
    (lambda: label_quality_scores([0, 1, 1], [[0.5, 0.5]] * 2), "3 labels for 2 samples"),
    (lambda: label_quality_scores([0, 1], [[0.5, np.nan]] * 2), "finite"),
    (lambda: label_quality_scores([0.5, 1], [[0.5, 0.5]] * 2), "integer class indices"),
    (lambda: label_quality_scores([0, 1], [[0.5, 0.5]] * 2, method="entropy"), "method must"),
    (lambda: loo_pred_probs(np.full((3, 2), np.inf), [0, 1, 0]), "finite numbers"),
    (lambda: loo_pred_probs(np.ones((3, 2)), [0, 1, 0], ridge=-1), "positive number or 'auto'"),
    (lambda: loo_pred_probs(np.ones((3, 2)), [0, 1, 0], ridge="big"), "positive number or"),
    (lambda: loo_pred_probs(np.ones((3, 2)), [0, 1, 0], model="tree"), "model must be one of"),
    (lambda: loo_pred_probs(np.ones((3, 2)), [0, 1, 0], landmarks=5), "landmarks must be"),
    (lambda: find_label_issues([0, 1], [[0.5, 0.5]] * 2, filter_by="prune_by_noise_rate"),
     "cleanlab's own filters"),
])
def test_bad_inputs_are_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _wine_table(tmp_path, suffix=".csv"):
    import pandas as pd
    from sklearn.datasets import load_wine

    data = load_wine()
    noisy, flipped = flip_labels(data.target, 0.15, seed=3)
    frame = pd.DataFrame(data.data, columns=data.feature_names)
    frame["cellar"] = np.where(np.arange(len(frame)) % 2, "north", "south")  # text: one-hot
    frame["cultivar"] = np.array(["barbera", "grignolino", "nebbiolo"])[noisy]
    file = tmp_path / f"wine{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(file)
    else:
        frame.to_csv(file, index=False, sep="\t" if suffix == ".tsv" else ",")
    return file, flipped


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_curate_a_table_with_named_classes_and_a_text_column(tmp_path, capsys, suffix):
    file, flipped = _wine_table(tmp_path, suffix)
    out = tmp_path / "out"
    assert main(["curate", "--table", str(file), "--label-column", "cultivar",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "178 samples, 15 features, 3 classes; one-hot encoded: cellar" in text, text
    rows = list(csv.DictReader(open(out / "curation.csv")))
    assert len(rows) == 178 and {r["label"] for r in rows} == {"barbera", "grignolino",
                                                               "nebbiolo"}
    flagged = {int(r["index"]) for r in rows if r["suspect"] == "1"}
    hits = len(flagged & set(np.flatnonzero(flipped)))
    assert hits >= 0.8 * flipped.sum() and hits >= 0.75 * len(flagged), (hits, len(flagged))


@pytest.mark.parametrize("content, args, match", [
    ("a,b\n1,x\n2,y\n3,x\n", ["--label-column", "c"], "no column 'c' (columns: a, b)"),
    ("a,b\n1,x\n2,y\n3,x\n", [], "name the label column with --label-column (columns: a, b)"),
    ("a,b\n1,x\n,y\n3,x\n", ["--label-column", "b"], "column 'a' has 1 missing value(s)"),
    ("a,b\n1,x\n2,x\n3,x\n", ["--label-column", "b"], "holds one class ('x')"),
    ("a,b\n1,x\n2,y\n3,x\n", ["--label-column", "b", "--feature-columns", "a,z"],
     "no column 'z'"),
    ("a,b\n1,x\n2,y\n", ["--label-column", "b"], "2 rows; curation needs at least 3"),
    ("a,b\n1,x\n2,y\n3,x\n", ["--label-column", "b", "--ridge", "lots"],
     "--ridge must be a positive number or 'auto'"),
])
def test_curate_bad_tables_are_clear_errors(tmp_path, capsys, content, args, match):
    file = tmp_path / "t.csv"
    file.write_text(content)
    assert main(["curate", "--table", str(file), *args, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err, err
    if "--ridge" not in args:
        assert str(file) in err
    other = tmp_path / "t.xlsx"
    other.write_text(content)
    assert main(["curate", "--table", str(other), "--label-column", "b"]) == 2
    assert "a table must be .csv, .tsv, .parquet, .pq" in capsys.readouterr().err
